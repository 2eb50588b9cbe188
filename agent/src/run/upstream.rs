//! The coordinator replicas the daemon talks to: one lazily connecting channel
//! per endpoint (nothing connects until the agent turns to it), and which one
//! is in use. An agent starts on the endpoint its instance ID hashes to
//! ([`endpoints::start_index`]), so a fleet spreads over the replicas; a call
//! that fails on the way there ([`tls::is_transport_failure`]) moves it on to
//! the next in an order of its own (round the list, but not the same way for
//! every agent, so a dead replica's agents spread over the others). An agent away from its own endpoint goes back to it
//! after a while ([`Upstream::go_home_if_due`]), so replicas restarted one after
//! another (an upgrade) do not leave the whole fleet on the last one. What a
//! call means is never decided here.

use std::time::Duration;

use parking_lot::RwLock;

use tether_util::now_ms;
use tonic::transport::Channel;
use tracing::info;

use super::RunError;
use crate::state::StateDir;
use crate::{endpoints, tls};

pub(super) struct Upstream {
    endpoints: Vec<String>,
    channels: RwLock<Vec<Channel>>,
    rotation: endpoints::Rotation,
}

/// Mutual-TLS channels to each endpoint, from the stored key material.
pub(super) fn build_channels(
    state: &StateDir,
    endpoints: &[String],
) -> Result<Vec<Channel>, RunError> {
    let cfg = tls::mtls_config(&state.ca_pem()?, &state.cert_pem()?, &state.key_pem()?)?;
    endpoints
        .iter()
        .map(|e| Ok(tls::channel(e, cfg.clone())?))
        .collect()
}

impl Upstream {
    /// Channels to every endpoint, visited in `order` (`order[0]`, home,
    /// first; see [`endpoints::failover_order`]).
    pub(super) fn new(
        state: &StateDir,
        endpoints: Vec<String>,
        order: Vec<usize>,
    ) -> Result<Self, RunError> {
        let channels = build_channels(state, &endpoints)?;
        Ok(Upstream {
            rotation: endpoints::Rotation::new(order),
            endpoints,
            channels: RwLock::new(channels),
        })
    }

    /// Builds every channel again (the client certificate was renewed).
    pub(super) fn rebuild(&self, state: &StateDir) -> Result<(), RunError> {
        let channels = build_channels(state, &self.endpoints)?;
        *self.channels.write() = channels;
        Ok(())
    }

    /// The index of the endpoint in use and its channel.
    pub(super) fn current(&self) -> (usize, Channel) {
        let i = self.rotation.current();
        let channels = self.channels.read();
        (i, channels[i % channels.len().max(1)].clone())
    }

    pub(super) fn endpoint(&self, i: usize) -> &str {
        &self.endpoints[i % self.endpoints.len()]
    }

    /// Host and port of the endpoint in use.
    pub(super) fn host(&self) -> (String, u16) {
        endpoints::split_endpoint(self.endpoint(self.rotation.current())).unwrap_or_default()
    }

    /// A call on endpoint `used` failed with `status`. On a transport failure
    /// the agent moves to the next endpoint, unless another call already moved
    /// it off `used`. Returns whether the endpoint in use is now another one,
    /// so the call is worth making again at once.
    pub(super) fn failed(&self, used: usize, status: &tonic::Status) -> bool {
        if !tls::is_transport_failure(status) {
            return false;
        }
        let (moved, elsewhere) = self.rotation.failed(used, now_ms());
        if let Some((from, to)) = moved {
            info!(
                error = %tls::error_chain(status),
                "coordinator {} unreachable; switching to {}",
                self.endpoint(from),
                self.endpoint(to)
            );
        }
        elsewhere
    }

    /// Goes back to the home endpoint when the agent has been away from it for
    /// `after` (the caller jitters it per agent, so a restarted replica gets its
    /// agents back gradually).
    pub(super) fn go_home_if_due(&self, after: Duration) {
        let since = self.rotation.moved_at_ms();
        if let Some((from, home)) = self
            .rotation
            .go_home_if_due(after.as_millis() as i64, now_ms())
        {
            info!(
                "returning to coordinator {} (away from it for {} s; on {} meanwhile)",
                self.endpoint(home),
                (now_ms() - since) / 1000,
                self.endpoint(from)
            );
        }
    }
}
