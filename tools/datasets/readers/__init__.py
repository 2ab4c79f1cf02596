"""One reader per data layout: class folders, list/CSV files, FGVC-Aircraft annotations."""
