//! The `rollpoint` command-line client.
