//! `directport=PORT` (sshfs's transport): SFTP straight over a TCP connection to host:PORT,
//! where an sftp-server listens (inetd, socat). No SSH: no encryption, no authentication —
//! for trusted networks and containers only.

use std::time::Duration;

use tokio::net::TcpStream;

use super::transport::{Opened, Transport};

pub struct DirectTransport {
    host: String,
    port: u16,
    timeout: Duration,
}

impl DirectTransport {
    pub fn new(host: String, port: u16, timeout: Duration) -> DirectTransport {
        DirectTransport {
            host,
            port,
            timeout,
        }
    }
}

#[async_trait::async_trait]
impl Transport for DirectTransport {
    async fn open(&self) -> Result<Opened, String> {
        let (host, port) = (self.host.as_str(), self.port);
        let stream =
            match tokio::time::timeout(self.timeout, TcpStream::connect((host, port))).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(format!(
                        "directport: cannot connect to {host} port {port}: {e}"
                    ))
                }
                Err(_) => {
                    return Err(format!(
                        "directport: connection to {host} port {port} timed out after {}s",
                        self.timeout.as_secs()
                    ))
                }
            };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        Ok(Opened {
            stream: Box::new(stream),
            keep_alive: Box::new(()),
            banner: None,
        })
    }

    async fn exec(
        &self,
        _command: &str,
        _stdin: &[u8],
        _limits: super::exec::ExecLimits,
    ) -> Result<super::exec::ExecOutput, super::exec::ExecError> {
        Err(super::exec::ExecError::Unavailable(
            "directport= is SFTP over plain TCP: no SSH to run a command with".into(),
        ))
    }
}
