//! Agent releases as agents fetch them, over their mutual-TLS channel: the
//! signed manifest of a version (or of the fleet's target), and its bytes
//! from any offset, one stored part at a time (resumable; memory per
//! download bounded by one part). Operators add, list, target and delete
//! releases through the action layer (`actions::releases`).

use prost::Message;
use tether_proto as pb;
use tether_ssm::limits::AGENT_RELEASE_PART_BYTES;
use tether_store::RELEASE_AVAILABLE;

use super::{AgentError, Coordinator};

/// A release version: what `Tether-UpdateAgent`'s `version` parameter and
/// the release verbs accept (semantic versions and the like).
pub fn valid_version(v: &str) -> bool {
    let mut chars = v.chars();
    v.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '_' | '-'))
}

/// A platform name: `linux-x86_64`, `linux-aarch64`, … (OS and
/// architecture as Rust names them).
pub fn valid_platform(p: &str) -> bool {
    p.len() <= 64
        && p.split_once('-').is_some_and(|(os, arch)| {
            !os.is_empty()
                && !arch.is_empty()
                && os.chars().all(|c| c.is_ascii_lowercase())
                && arch
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// The version an agent asked for: the fleet's target when it named none.
async fn version_asked(c: &Coordinator, version: &str) -> Result<String, AgentError> {
    if !version.is_empty() {
        if !valid_version(version) {
            return Err(AgentError::BadRequest(format!(
                "{version:?} is not a release version (letters, digits, '.', '+', '_', '-'; at most 64)"
            )));
        }
        return Ok(version.to_string());
    }
    c.store.target_version().await?.ok_or_else(|| {
        AgentError::NotFound(
            "no agent version is the fleet's target: name a version, or set one with \
             set-agent-target-version"
                .into(),
        )
    })
}

impl Coordinator {
    /// The signed manifest of `version` (or the target's) for `platform`.
    pub async fn release_manifest(
        &self,
        version: &str,
        platform: &str,
    ) -> Result<(Vec<u8>, Vec<u8>), AgentError> {
        if !valid_platform(platform) {
            return Err(AgentError::BadRequest(format!(
                "{platform:?} is not a platform (e.g. linux-x86_64)"
            )));
        }
        let version = version_asked(self, version).await?;
        match self.store.release(&version, platform).await? {
            Some(r) if r.status == RELEASE_AVAILABLE => match (r.manifest, r.signature) {
                (Some(m), Some(s)) => Ok((m, s)),
                _ => Err(AgentError::Internal(format!(
                    "release {version} for {platform} is available but has no signed manifest"
                ))),
            },
            Some(_) => Err(AgentError::NotFound(format!(
                "release {version} for {platform} is still being uploaded"
            ))),
            None => Err(AgentError::NotFound(format!(
                "there is no release {version} for {platform}"
            ))),
        }
    }

    /// Up to one part's worth of the bytes of an available release, from
    /// `offset`: `Ok(None)` at its end.
    pub async fn release_chunk(
        &self,
        version: &str,
        platform: &str,
        offset: u64,
    ) -> Result<Option<pb::ReleaseChunk>, AgentError> {
        let Ok(at) = i64::try_from(offset) else {
            return Ok(None);
        };
        let Some((start, data)) = self.store.release_part_at(version, platform, at).await? else {
            return Ok(None);
        };
        let from = (at - start) as usize;
        let to = data.len().min(from + AGENT_RELEASE_PART_BYTES);
        Ok(Some(pb::ReleaseChunk {
            offset,
            data: data[from..to].to_vec(),
        }))
    }

    /// Checks that a download may start: the release is available and
    /// `offset` within it. Answers its size.
    pub async fn release_download(
        &self,
        version: &str,
        platform: &str,
        offset: u64,
    ) -> Result<u64, AgentError> {
        let (manifest, _) = self.release_manifest(version, platform).await?;
        let m = pb::ReleaseManifest::decode(manifest.as_slice())
            .map_err(|e| AgentError::Internal(format!("stored release manifest: {e}")))?;
        if offset > m.size {
            return Err(AgentError::BadRequest(format!(
                "offset {offset} is past the end of release {version} ({} bytes)",
                m.size
            )));
        }
        Ok(m.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_platforms() {
        for ok in ["1.2.3", "0.1.0-rc.1", "2026.11+build_7", "B"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in ["", "-1", ".1", "1 2", "1/2", "é", &"9".repeat(65)] {
            assert!(!valid_version(bad), "{bad}");
        }
        for ok in ["linux-x86_64", "linux-aarch64", "macos-arm"] {
            assert!(valid_platform(ok), "{ok}");
        }
        for bad in [
            "",
            "linux",
            "-x86_64",
            "linux-",
            "Linux-x86_64",
            "linux-x86 64",
        ] {
            assert!(!valid_platform(bad), "{bad}");
        }
    }
}
