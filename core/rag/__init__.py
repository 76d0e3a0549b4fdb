"""The retriever rung: document chunks in LanceDB, full-text and vector search."""
