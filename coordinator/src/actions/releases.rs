//! Agent releases (`AddAgentRelease`, `ListAgentReleases`,
//! `SetAgentTargetVersion`, `DeleteAgentRelease`): Tether's own operations
//! on the operator channel. A release arrives in parts of at most 1 MiB
//! (every request stays under the 4 MiB body cap); once every byte is held
//! its SHA-256 is checked against the one announced, and only then is its
//! manifest signed with the release key. Agents fetch it over their own
//! channel (`core::releases`).

use base64::Engine as _;
use prost::Message;
use serde_json::{Value, json};
use sha2::Digest as _;
use tether_proto as pb;
use tether_ssm::input::{
    AddAgentReleaseRequest, DeleteAgentReleaseRequest, SetAgentTargetVersionRequest,
};
use tether_ssm::{ApiError, limits};
use tether_store::{PartOutcome, RELEASE_AVAILABLE, ReleaseRow};
use tether_util::time::now_ms;

use super::wire::ts;
use crate::authz::Authority;
use crate::core::Coordinator;

fn not_found(version: &str, platform: &str) -> ApiError {
    ApiError::new(
        "AgentReleaseNotFound",
        format!("there is no agent release {version} for {platform}"),
    )
}

fn invalid(message: String) -> ApiError {
    ApiError::new("InvalidParameters", message)
}

/// A release as the operations answer it.
fn release_json(r: &ReleaseRow, target: Option<&str>) -> Value {
    json!({
        "AgentVersion": r.version,
        "Platform": r.platform,
        "Size": r.size,
        "Sha256": r.sha256,
        "Status": r.status,
        "ReceivedBytes": r.received,
        "UploadedDate": ts(r.uploaded_ms),
        "UploadedBy": r.uploaded_by,
        "IsTarget": target == Some(r.version.as_str()),
    })
}

/// `AddAgentRelease`: starts (Offset 0) or continues an upload with one
/// part; the part that completes it has the whole checked and signed.
pub async fn add(
    c: &Coordinator,
    authority: &Authority,
    r: AddAgentReleaseRequest,
) -> Result<Value, ApiError> {
    let (version, platform) = (r.agent_version.as_str(), r.platform.as_str());
    let offset = r.offset.unwrap_or(0);
    let part = base64::engine::general_purpose::STANDARD
        .decode(r.content.as_deref().unwrap_or_default())
        .map_err(|e| invalid(format!("Content is not base64: {e}")))?;
    if part.len() > limits::AGENT_RELEASE_PART_BYTES {
        return Err(invalid(format!(
            "Content holds {} bytes; a part holds at most {}",
            part.len(),
            limits::AGENT_RELEASE_PART_BYTES
        )));
    }
    if offset + part.len() as i64 > r.size {
        return Err(invalid(format!(
            "Content at Offset {offset} ({} bytes) runs past Size {}",
            part.len(),
            r.size
        )));
    }
    let held = c.store.release(version, platform).await?;
    match &held {
        Some(h) if h.status == RELEASE_AVAILABLE => {
            return Err(ApiError::new(
                "AgentReleaseAlreadyExists",
                format!(
                    "agent release {version} for {platform} exists (SHA-256 {}); delete it first to replace it",
                    h.sha256
                ),
            ));
        }
        Some(h) if offset > 0 && (h.size != r.size || h.sha256 != r.sha256) => {
            return Err(invalid(format!(
                "the upload of {version} for {platform} in progress is of {} bytes with SHA-256 {}; \
                 start over with Offset 0 to send another binary",
                h.size, h.sha256
            )));
        }
        None if offset > 0 => {
            return Err(invalid(format!(
                "no upload of {version} for {platform} is in progress: start with Offset 0"
            )));
        }
        _ => {}
    }
    if offset == 0 {
        let row = ReleaseRow {
            version: version.to_string(),
            platform: platform.to_string(),
            size: r.size,
            sha256: r.sha256.clone(),
            received: 0,
            status: String::new(),
            manifest: None,
            signature: None,
            uploaded_ms: now_ms(),
            uploaded_by: authority.arn().to_string(),
        };
        if !c
            .store
            .begin_release(&row, limits::MAX_AGENT_RELEASES)
            .await?
        {
            return Err(ApiError::new(
                "AgentReleaseLimitExceeded",
                format!(
                    "{} agent releases are kept, the most there may be (or {version} for {platform} was \
                     just added by someone else): delete old ones first",
                    limits::MAX_AGENT_RELEASES
                ),
            ));
        }
    }
    if !part.is_empty() {
        match c
            .store
            .append_release_part(version, platform, offset, &part)
            .await?
        {
            PartOutcome::Stored { .. } => {}
            PartOutcome::NotUploading => {
                return Err(invalid(format!(
                    "no upload of {version} for {platform} is in progress: start with Offset 0"
                )));
            }
            PartOutcome::WrongOffset { received } => {
                return Err(invalid(format!(
                    "Offset {offset}: the coordinator holds {received} bytes of {version} for {platform}; \
                     send the part that starts at {received}"
                )));
            }
        }
    }
    let mut row = c
        .store
        .release(version, platform)
        .await?
        .ok_or_else(|| not_found(version, platform))?;
    if row.received == row.size && row.status != RELEASE_AVAILABLE {
        seal(c, &row).await?;
        row = c
            .store
            .release(version, platform)
            .await?
            .ok_or_else(|| not_found(version, platform))?;
    }
    let target = c.store.target_version().await?;
    Ok(json!({ "AgentRelease": release_json(&row, target.as_deref()) }))
}

/// Checks a whole release against its announced SHA-256, reading it part by
/// part, and signs its manifest; a release whose bytes do not match is
/// discarded.
async fn seal(c: &Coordinator, row: &ReleaseRow) -> Result<(), ApiError> {
    let (version, platform) = (row.version.as_str(), row.platform.as_str());
    let mut hash = sha2::Sha256::new();
    let mut at = 0i64;
    while at < row.size {
        let Some((start, data)) = c.store.release_part_at(version, platform, at).await? else {
            break;
        };
        hash.update(&data[(at - start) as usize..]);
        at = start + data.len() as i64;
    }
    let digest = hash.finalize();
    if at != row.size || hex::encode(digest) != row.sha256 {
        c.store.delete_release(version, platform).await?;
        return Err(invalid(format!(
            "the {at} bytes received of {version} for {platform} do not have SHA-256 {}: \
             the upload was discarded; add the release again",
            row.sha256
        )));
    }
    let manifest = pb::ReleaseManifest {
        version: version.to_string(),
        platform: platform.to_string(),
        size: row.size as u64,
        sha256: digest.to_vec(),
        uploaded_at_ms: row.uploaded_ms,
    }
    .encode_to_vec();
    let signature = c.pki.sign_release(&manifest);
    c.store
        .finish_release(version, platform, &manifest, &signature)
        .await?;
    tracing::info!(%version, %platform, size = row.size, sha256 = %row.sha256, "agent release signed");
    Ok(())
}

/// `ListAgentReleases`.
pub async fn list(c: &Coordinator) -> Result<Value, ApiError> {
    let target = c.store.target_version().await?;
    let releases: Vec<Value> = c
        .store
        .releases()
        .await?
        .iter()
        .map(|r| release_json(r, target.as_deref()))
        .collect();
    let mut out = json!({ "AgentReleases": releases });
    if let Some(t) = target {
        out["TargetVersion"] = json!(t);
    }
    Ok(out)
}

/// `SetAgentTargetVersion`: the version must have an available release.
pub async fn set_target(
    c: &Coordinator,
    authority: &Authority,
    r: SetAgentTargetVersionRequest,
) -> Result<Value, ApiError> {
    let available = c
        .store
        .releases()
        .await?
        .into_iter()
        .any(|x| x.version == r.agent_version && x.status == RELEASE_AVAILABLE);
    if !available {
        return Err(ApiError::new(
            "AgentReleaseNotFound",
            format!(
                "there is no available agent release {} (add-agent-release first)",
                r.agent_version
            ),
        ));
    }
    c.store
        .set_target_version(&r.agent_version, now_ms(), authority.arn())
        .await?;
    Ok(json!({}))
}

/// `DeleteAgentRelease`: not a release of the target version.
pub async fn delete(c: &Coordinator, r: DeleteAgentReleaseRequest) -> Result<Value, ApiError> {
    if c.store.target_version().await?.as_deref() == Some(r.agent_version.as_str()) {
        return Err(ApiError::new(
            "AgentReleaseInUse",
            format!(
                "{} is the fleet's target version: set another target first",
                r.agent_version
            ),
        ));
    }
    if !c
        .store
        .delete_release(&r.agent_version, &r.platform)
        .await?
    {
        return Err(not_found(&r.agent_version, &r.platform));
    }
    Ok(json!({}))
}
