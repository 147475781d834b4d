//! Running an operator's shell command (a health check, an event handler) without ever
//! blocking the daemon: `sh -c COMMAND` in a process group of its own, with a timeout, bounded
//! output, and the whole group killed at the timeout.
//!
//! - The command inherits the daemon's environment, less `CHATTERD_HTTP_TOKEN`, plus the
//!   variables given.
//! - The command is a leader of a new process group (`setpgid(0, 0)`), so that at the timeout
//!   `kill(-pgid, SIGKILL)` ends it *and* whatever it started (a `sleep` in a pipeline, a
//!   plugin's helper). A command that leaves the group on purpose (`setsid`) is on its own.
//! - If the future running the command is dropped (the daemon stops), the group is killed too.
//! - Output is read concurrently with the wait, so a chatty command never blocks on a full
//!   pipe; the first [`OUTPUT_LIMIT`] bytes of each stream are kept, the rest is discarded.
//!   Once the command exits, output still held open by a process it left in the background is
//!   waited for only [`OUTPUT_GRACE`].

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::foundation::duration::format_duration;
use crate::foundation::io::io_message;

/// Bytes of standard output (and of standard error) kept per run.
pub const OUTPUT_LIMIT: usize = 4096;
/// How long output is still read after the command exited.
pub const OUTPUT_GRACE: Duration = Duration::from_millis(100);
/// Longest output line kept in a result, in bytes.
pub const LINE_LIMIT: usize = 256;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It ran past its timeout; its process group was killed.
    TimedOut,
    /// It could not be started (the message says why).
    NotStarted(String),
}

impl Exit {
    /// `exit code 2`, `killed by signal 9`, `timed out after 5s`, `cannot start: ...`.
    pub fn describe(&self, timeout: Duration) -> String {
        match self {
            Exit::Code(code) => format!("exit code {code}"),
            Exit::Signal(sig) => format!("killed by signal {sig}"),
            Exit::TimedOut => format!("timed out after {}", format_duration(timeout)),
            Exit::NotStarted(why) => format!("cannot start: {why}"),
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub exit: Exit,
    /// Its process id (the process group's id), if it started.
    pub pid: Option<u32>,
    /// The first [`OUTPUT_LIMIT`] bytes of its standard output.
    pub stdout: Vec<u8>,
    /// The first [`OUTPUT_LIMIT`] bytes of its standard error.
    pub stderr: Vec<u8>,
    /// From start to exit (or to the kill).
    pub duration: Duration,
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Shell<'a> {
    /// The command line, given to `sh -c`.
    pub command: &'a str,
    /// Written to its standard input, which is then closed (`None`: no standard input).
    pub stdin: Option<Vec<u8>>,
    /// Environment variables added to the daemon's.
    pub env: Vec<(String, String)>,
}

/// Kills a process group when dropped, unless disarmed: the group of a command whose run was
/// cancelled (the daemon stopping) does not outlive it.
struct GroupGuard {
    pgid: Option<libc::pid_t>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: kill has no memory-safety preconditions. The group id is the pid of our
            // own child: it stays reserved while the group has members, so this never reaches
            // an unrelated process.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads up to [`OUTPUT_LIMIT`] bytes into `sink` and discards the rest until end of file.
fn drain<R: AsyncRead + Unpin + Send + 'static>(
    mut reader: R,
    sink: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut kept = sink.lock().unwrap_or_else(|e| e.into_inner());
                    let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    })
}

/// Runs `sh -c COMMAND` as described in the module documentation, for at most `timeout`.
pub async fn run(shell: Shell<'_>, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(shell.command)
        // The daemon's API token is not the business of plugins and handlers.
        .env_remove("CHATTERD_HTTP_TOKEN")
        .envs(shell.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if shell.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Outcome {
                exit: Exit::NotStarted(io_message(&e)),
                pid: None,
                stdout: Vec::new(),
                stderr: Vec::new(),
                duration: started.elapsed(),
            }
        }
    };
    let pid = child.id();
    let mut guard = GroupGuard {
        pgid: pid.and_then(|p| libc::pid_t::try_from(p).ok()),
    };
    let stdin_task = match (shell.stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => Some(tokio::spawn(async move {
            // A command that does not read its input gets EPIPE here: not an error.
            let _ = pipe.write_all(&data).await;
            let _ = pipe.shutdown().await;
        })),
        _ => None,
    };
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<JoinHandle<()>> = [
        child.stdout.take().map(|p| drain(p, out.clone())),
        child.stderr.take().map(|p| drain(p, err.clone())),
    ]
    .into_iter()
    .flatten()
    .collect();

    let exit = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(sig)) => Exit::Signal(sig),
                (None, None) => Exit::NotStarted("unknown exit status".into()),
            }
        }
        Ok(Err(e)) => {
            guard.kill();
            let _ = child.wait().await;
            Exit::NotStarted(io_message(&e))
        }
        Err(_) => {
            guard.kill();
            let _ = child.wait().await;
            Exit::TimedOut
        }
    };
    let duration = started.elapsed();
    // The leader is reaped: its group may still hold members it left running in the
    // background, which are not ours to kill after a normal exit.
    guard.pgid = None;
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout(OUTPUT_GRACE, reader).await.is_err() {
            abort.abort();
        }
    }
    if let Some(task) = stdin_task {
        task.abort();
    }
    let take =
        |m: &Arc<Mutex<Vec<u8>>>| std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()));
    Outcome {
        exit,
        pid,
        stdout: take(&out),
        stderr: take(&err),
        duration,
    }
}

/// The first non-empty line of `bytes` (lossy UTF-8), trimmed, cut at a Nagios performance
/// data separator (`|`) if `perfdata` is set, and at most [`LINE_LIMIT`] bytes (cut on a
/// character boundary, with `…` appended).
pub fn first_line(bytes: &[u8], perfdata: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .map(|l| {
            let l = if perfdata {
                l.split('|').next().unwrap_or(l)
            } else {
                l
            };
            l.trim()
        })
        .find(|l| !l.is_empty())
        .unwrap_or("");
    truncate(line, LINE_LIMIT)
}

/// `text` cut to at most `limit` bytes on a character boundary, with `…` appended if cut.
pub fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let ellipsis = '…';
    let mut end = limit.saturating_sub(ellipsis.len_utf8());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text[..end].to_owned();
    out.push(ellipsis);
    out
}

/// Whether process `pid` has ended (absent, or a zombie waiting for its parent).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_skips_blank_lines_and_perfdata_and_is_bounded() {
        assert_eq!(
            first_line(b"\n  DISK OK - free 56% | /=2643MB;;\nmore", true),
            "DISK OK - free 56%"
        );
        assert_eq!(first_line(b"a | b", false), "a | b");
        assert_eq!(first_line(b"", true), "");
        let long = "é".repeat(400);
        let cut = first_line(long.as_bytes(), true);
        assert!(cut.len() <= LINE_LIMIT, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(first_line(&[0xff, b'o', b'k'], true), "\u{fffd}ok");
    }

    #[tokio::test]
    async fn exit_codes_and_output_are_reported() {
        let outcome = run(
            Shell {
                command: "echo hello; echo oops >&2; exit 3",
                ..Shell::default()
            },
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(outcome.exit, Exit::Code(3));
        assert_eq!(outcome.stdout, b"hello\n");
        assert_eq!(outcome.stderr, b"oops\n");
    }

    #[tokio::test]
    async fn stdin_and_environment_reach_the_command() {
        let outcome = run(
            Shell {
                command: "read line; echo \"$line $CHATTER_TEST\"",
                stdin: Some(b"from-stdin\n".to_vec()),
                env: vec![("CHATTER_TEST".into(), "from-env".into())],
            },
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(outcome.exit, Exit::Code(0));
        assert_eq!(outcome.stdout, b"from-stdin from-env\n");
    }

    #[tokio::test]
    async fn a_hanging_command_and_its_children_are_killed_at_the_timeout() {
        let dir = std::env::temp_dir().join(format!("chatterd-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pids = dir.join("pids");
        let command = format!("sleep 60 & echo $$ $! > {}; wait", pids.display());
        let started = Instant::now();
        let outcome = run(
            Shell {
                command: &command,
                ..Shell::default()
            },
            Duration::from_millis(500),
        )
        .await;
        assert_eq!(outcome.exit, Exit::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = std::fs::read_to_string(&pids).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        for pid in text.split_whitespace() {
            let pid: u32 = pid.parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while !process_gone(pid) {
                assert!(Instant::now() < deadline, "process {pid} still running");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    #[tokio::test]
    async fn huge_output_does_not_block_and_is_bounded() {
        let outcome = run(
            Shell {
                command: "head -c 1000000 /dev/zero",
                ..Shell::default()
            },
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(outcome.exit, Exit::Code(0));
        assert_eq!(outcome.stdout.len(), OUTPUT_LIMIT);
    }

    #[test]
    fn unknown_processes_are_gone() {
        assert!(!process_gone(std::process::id()));
        assert!(process_gone(u32::MAX - 1));
    }
}
