"""One reader per data layout (class folders, list/CSV files, FGVC-Aircraft annotations): each module's
``read_split`` gives a split's ``(paths, labels, class names)``, which ``tools.datasets.loader.open_source``
checks as ``ImageFiles``; ``tools.datasets.layouts`` says which reader a layout uses."""
