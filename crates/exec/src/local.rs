//! The local-process executor (placeholder, to be implemented).
