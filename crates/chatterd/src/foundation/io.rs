//! The wording of I/O errors in the daemon's messages and logs.

/// The message of an IO error without Rust's ` (os error N)` suffix.
pub fn io_message(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}
