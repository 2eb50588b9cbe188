//! Tags on resources: AddTagsToResource, RemoveTagsFromResource and
//! ListTagsForResource for managed instances, documents and parameters. Tags on managed
//! instances are what `Key=tag:NAME` and `Key=tag-key` targets select.

use serde_json::{Value, json};
use tether_ssm::input::{
    AddTagsToResourceRequest, ListTagsForResourceRequest, RemoveTagsFromResourceRequest,
};
use tether_ssm::target::Tag;
use tether_ssm::{ApiError, limits};

use super::documents;
use super::wire::{tag_pairs, tags_json};
use crate::core::Coordinator;

/// The resource types Tether tags.
const TAGGABLE: [&str; 3] = ["ManagedInstance", "Document", "Parameter"];

/// A resource's current tags, after checking it exists.
async fn current(c: &Coordinator, op: &str, kind: &str, id: &str) -> Result<Vec<Tag>, ApiError> {
    match kind {
        "ManagedInstance" => {
            let row = c
                .store
                .instance(id)
                .await?
                .filter(|i| i.deregistered_ms.is_none())
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidResourceId",
                        format!("{op}: managed instance {id:?} is not registered"),
                    )
                })?;
            tag_pairs(&format!("instance {id}"), &row.tags_json)
        }
        "Document" => {
            let stored = documents::stored_tags(c, op, id).await?;
            tag_pairs(&format!("document {id}"), &stored)
        }
        "Parameter" => {
            let p = c.store.parameter(id).await?.ok_or_else(|| {
                ApiError::new(
                    "InvalidResourceId",
                    format!("{op}: parameter {id:?} does not exist"),
                )
            })?;
            tag_pairs(&format!("parameter {id}"), &p.tags_json)
        }
        other => Err(ApiError::new(
            "InvalidResourceType",
            format!(
                "{op}: ResourceType {other:?} cannot be tagged in Tether (use {})",
                TAGGABLE.join(", ")
            ),
        )),
    }
}

async fn store(c: &Coordinator, kind: &str, id: &str, tags: &[Tag]) -> Result<Value, ApiError> {
    let json = tags_json(tags).to_string();
    let stored = match kind {
        "ManagedInstance" => c.store.set_instance_tags(id, &json).await?,
        "Parameter" => c.store.set_parameter_tags(id, &json).await?,
        _ => c.store.set_document_tags(id, &json).await?,
    };
    if !stored {
        return Err(ApiError::new(
            "InvalidResourceId",
            format!("{kind} {id:?} no longer exists"),
        ));
    }
    if kind == "ManagedInstance" {
        // Associations may target it by tag.
        c.associations_changed(true).await;
    }
    Ok(json!({}))
}

pub(super) async fn add(c: &Coordinator, r: AddTagsToResourceRequest) -> Result<Value, ApiError> {
    let op = "AddTagsToResource";
    let (kind, id) = (r.resource_type.as_str(), r.resource_id.as_str());
    let mut tags = current(c, op, kind, id).await?;
    if r.tags.is_empty() {
        return Err(ApiError::validation(
            "AddTagsToResource: Tags must name at least one tag",
        ));
    }
    for t in r.tags {
        match tags.iter_mut().find(|(k, _)| *k == t.key) {
            Some(existing) => existing.1 = t.value,
            None => tags.push((t.key, t.value)),
        }
    }
    if tags.len() > limits::MAX_TAGS_PER_RESOURCE {
        return Err(ApiError::new(
            "TooManyTagsError",
            format!(
                "AddTagsToResource: {kind} {id} would have {} tags; at most {} are allowed",
                tags.len(),
                limits::MAX_TAGS_PER_RESOURCE
            ),
        ));
    }
    store(c, kind, id, &tags).await
}

pub(super) async fn remove(
    c: &Coordinator,
    r: RemoveTagsFromResourceRequest,
) -> Result<Value, ApiError> {
    let op = "RemoveTagsFromResource";
    let (kind, id) = (r.resource_type.as_str(), r.resource_id.as_str());
    let tags = current(c, op, kind, id).await?;
    if r.tag_keys.is_empty() {
        return Err(ApiError::validation(
            "RemoveTagsFromResource: TagKeys must name at least one key",
        ));
    }
    let kept: Vec<Tag> = tags
        .into_iter()
        .filter(|(k, _)| !r.tag_keys.contains(k))
        .collect();
    store(c, kind, id, &kept).await
}

pub(super) async fn list(
    c: &Coordinator,
    r: ListTagsForResourceRequest,
) -> Result<Value, ApiError> {
    let tags = current(c, "ListTagsForResource", &r.resource_type, &r.resource_id).await?;
    Ok(json!({"TagList": tags_json(&tags)}))
}
