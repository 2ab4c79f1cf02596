"""The ground every script stands on: config keys and their checks, one-line errors and exit codes, file
idioms, MindSpore's runtime, the memory guard and stop signals."""
