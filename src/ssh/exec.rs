//! A command on an `exec` channel of an SSH connection: its standard input given whole, its
//! output collected within bounds (`remote/exec.rs`).

use bytes::Bytes;
use russh::client::Handle;
use russh::ChannelMsg;

use super::connect::ClientHandler;
use crate::remote::exec::{Collector, ExecError, ExecLimits, ExecOutput};

/// Runs `command` on a new session channel of `handle`, feeds it `stdin` then end of file,
/// and returns what it printed once the server closes the channel. `open_within` bounds the
/// channel's opening and the exec request's answer; `limits.deadline` the whole run.
pub(super) async fn run(
    handle: &Handle<ClientHandler>,
    command: &str,
    stdin: &[u8],
    limits: ExecLimits,
    open_within: std::time::Duration,
) -> Result<ExecOutput, ExecError> {
    let lost = |e: russh::Error| ExecError::Failed(format!("the SSH connection failed: {e}"));
    let mut ch = tokio::time::timeout(open_within, handle.channel_open_session())
        .await
        .map_err(|_| ExecError::Failed("no channel within the deadline".into()))?
        .map_err(|e| ExecError::Refused(format!("the server opened no session channel: {e}")))?;
    let started = async {
        ch.exec(true, command).await.map_err(lost)?;
        loop {
            match ch.wait().await {
                Some(ChannelMsg::Success) => return Ok(()),
                Some(ChannelMsg::Failure) => {
                    return Err(ExecError::Refused(
                        "the server refuses to run commands (exec) for this account".into(),
                    ))
                }
                Some(ChannelMsg::Close) | None => {
                    return Err(ExecError::Refused(
                        "the server closed the channel of a command at once".into(),
                    ))
                }
                Some(_) => {}
            }
        }
    };
    match tokio::time::timeout(open_within, started).await {
        Ok(r) => r?,
        Err(_) => {
            let _ = ch.close().await;
            return Err(ExecError::Failed(
                "the server did not answer an exec request".into(),
            ));
        }
    }
    let ran = async {
        ch.data_bytes(Bytes::copy_from_slice(stdin))
            .await
            .map_err(lost)?;
        ch.eof().await.map_err(lost)?;
        let mut got = Collector::default();
        loop {
            match ch.wait().await {
                Some(ChannelMsg::Data { data }) => got.stdout(&data, &limits)?,
                Some(ChannelMsg::ExtendedData { data, .. }) => got.stderr(&data),
                Some(ChannelMsg::ExitStatus { exit_status }) => got.out.status = Some(exit_status),
                Some(ChannelMsg::Close) | None => return Ok(got.out),
                Some(_) => {}
            }
        }
    };
    let r = tokio::time::timeout(limits.deadline, ran).await;
    let r = r.unwrap_or_else(|_| {
        Err(ExecError::Failed(format!(
            "the command did not end within {} s",
            limits.deadline.as_secs()
        )))
    });
    if r.is_err() {
        // Whatever it still runs on the server is not waited for.
        let _ = ch.close().await;
    }
    r
}
