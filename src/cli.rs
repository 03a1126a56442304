//! Command line and `-o` option parsing (being written).
