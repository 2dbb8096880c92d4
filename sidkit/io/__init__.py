"""Reading and writing sidkit's files (catalogs, codes, model directories)."""
