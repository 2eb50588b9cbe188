//! Tags on resources: AddTagsToResource, RemoveTagsFromResource and
//! ListTagsForResource for managed instances and documents. Tags on managed
//! instances are what `Key=tag:NAME` and `Key=tag-key` targets select.

use serde_json::{Value, json};

use super::{ApiError, ApiResult, Req, documents, tag_pairs, tags_of};
use crate::core::Coordinator;
use tether_ssm::limits;

/// The resource types Tether tags.
const TAGGABLE: [&str; 2] = ["ManagedInstance", "Document"];

/// A resource's current tags as JSON text, after checking it exists.
async fn current(c: &Coordinator, req: &Req<'_>) -> Result<(String, String, String), ApiError> {
    let kind = req.required_str("ResourceType")?;
    let id = req.required_str("ResourceId")?;
    let tags_json = match kind {
        "ManagedInstance" => {
            let row = c
                .store
                .instance(id)
                .await?
                .filter(|i| i.deregistered_ms.is_none())
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidResourceId",
                        format!("{}: managed instance {id:?} is not registered", req.op),
                    )
                })?;
            row.tags_json
        }
        "Document" => documents::tags(c, req.op, id).await?,
        other => {
            return Err(ApiError::new(
                "InvalidResourceType",
                format!(
                    "{}: ResourceType {other:?} cannot be tagged in Tether (use {})",
                    req.op,
                    TAGGABLE.join(" or ")
                ),
            ));
        }
    };
    Ok((kind.to_owned(), id.to_owned(), tags_json))
}

async fn store(c: &Coordinator, kind: &str, id: &str, tags: Vec<(String, String)>) -> ApiResult {
    let json = Value::Array(
        tags.into_iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
    .to_string();
    let stored = match kind {
        "ManagedInstance" => c.store.set_instance_tags(id, &json).await?,
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

pub(super) async fn add_tags_to_resource(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let (kind, id, tags_json) = current(c, req).await?;
    let new = tags_of(req)?;
    if new.is_empty() {
        return Err(ApiError::validation(
            "AddTagsToResource: Tags must name at least one tag",
        ));
    }
    let mut tags = tag_pairs(&tags_json);
    for t in &new {
        let key = t["Key"].as_str().unwrap_or_default().to_owned();
        let value = t["Value"].as_str().unwrap_or_default().to_owned();
        match tags.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = value,
            None => tags.push((key, value)),
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
    store(c, &kind, &id, tags).await
}

pub(super) async fn remove_tags_from_resource(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let (kind, id, tags_json) = current(c, req).await?;
    let keys = req.str_list("TagKeys")?;
    if keys.is_empty() {
        return Err(ApiError::validation(
            "RemoveTagsFromResource: TagKeys must name at least one key",
        ));
    }
    let tags = tag_pairs(&tags_json)
        .into_iter()
        .filter(|(k, _)| !keys.contains(k))
        .collect();
    store(c, &kind, &id, tags).await
}

pub(super) async fn list_tags_for_resource(c: &Coordinator, req: &Req<'_>) -> ApiResult {
    let (_, _, tags_json) = current(c, req).await?;
    let list: Vec<Value> = tag_pairs(&tags_json)
        .into_iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({"TagList": list}))
}
