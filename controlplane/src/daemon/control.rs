//! The per-instance Unix control socket (protocol in [`crate::ctl`]).
//!
//! Connections are served by their own tasks; each request is passed to the
//! event loop, which alone owns the protocol state, and its answer is
//! written back.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::ctl::{Request, Response};

/// A request on its way to the loop, with where the answer goes.
pub type Command = (Request, oneshot::Sender<Response>);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another control plane is serving {0}")]
    InUse(PathBuf),
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The bound socket; the path is removed on drop.
pub struct ControlSocket {
    path: PathBuf,
    listener: Option<UnixListener>,
}

impl ControlSocket {
    pub fn bind(path: &Path) -> Result<ControlSocket, ControlError> {
        let err = |source| ControlError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        if path.exists() {
            // A live socket belongs to a running instance; a dead one is
            // left over from a crash and is replaced.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        // Killing tunnels is for the operator (root) only.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        Ok(ControlSocket { path: path.to_path_buf(), listener: Some(listener) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until the loop goes away.
    pub fn serve(&mut self, to_loop: mpsc::Sender<Command>) {
        let Some(listener) = self.listener.take() else { return };
        tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket accept");
                        continue;
                    }
                };
                if to_loop.is_closed() {
                    return;
                }
                tokio::spawn(connection(stream, to_loop.clone()));
            }
        });
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn connection(stream: UnixStream, to_loop: mpsc::Sender<Command>) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                let (tx, rx) = oneshot::channel();
                if to_loop.send((req, tx)).await.is_err() {
                    return;
                }
                rx.await.unwrap_or_else(|_| Response::Error { message: "shutting down".into() })
            }
            Err(e) => Response::Error { message: format!("bad request: {e}") },
        };
        let Ok(mut out) = serde_json::to_string(&answer) else { return };
        out.push('\n');
        if wr.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}
