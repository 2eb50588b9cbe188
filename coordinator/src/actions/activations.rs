//! Activations: CreateActivation, DescribeActivations, DeleteActivation.
//! An activation's code is shown once and stored only as a salted hash.

use serde_json::{Value, json};
use tether_ssm::input::{
    CreateActivationRequest, DeleteActivationRequest, DescribeActivationsRequest,
};
use tether_ssm::{ApiError, limits};
use tether_store::ActivationRow;
use tether_util::time::{iso_ms, now_ms};

use super::wire::{Page, stored, tags_json, ts};
use crate::core::{Coordinator, code_hash};

pub(super) async fn create(c: &Coordinator, r: CreateActivationRequest) -> Result<Value, ApiError> {
    if r.registration_metadata.is_some_and(|m| !m.is_empty()) {
        return Err(ApiError::validation(
            "CreateActivation: RegistrationMetadata is not supported by Tether",
        ));
    }
    let now = now_ms();
    let max_ms = now + limits::MAX_ACTIVATION_LIFETIME.as_millis() as i64;
    let expiration = r
        .expiration_date
        .map(|t| t.ms)
        .unwrap_or(now + limits::DEFAULT_ACTIVATION_LIFETIME.as_millis() as i64);
    if expiration <= now || expiration > max_ms {
        return Err(ApiError::validation(format!(
            "CreateActivation: ExpirationDate {} must be in the future and at most 30 days ahead (before {})",
            iso_ms(expiration),
            iso_ms(max_ms)
        )));
    }
    let tags = super::wire::given_tags(r.tags);
    let activation_id = uuid::Uuid::new_v4().to_string();
    let code: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..limits::ACTIVATION_CODE_LEN)
            .map(|_| {
                limits::ACTIVATION_CODE_ALPHABET
                    [rng.random_range(0..limits::ACTIVATION_CODE_ALPHABET.len())]
                    as char
            })
            .collect()
    };
    let salt: [u8; 16] = rand::random();
    c.store
        .insert_activation(&ActivationRow {
            activation_id: activation_id.clone(),
            code_salt: salt.to_vec(),
            code_hash: code_hash(&salt, &code),
            description: r.description.unwrap_or_default(),
            default_instance_name: r.default_instance_name.unwrap_or_default(),
            iam_role: r.iam_role,
            registration_limit: r
                .registration_limit
                .unwrap_or(limits::DEFAULT_REGISTRATION_LIMIT),
            registrations_count: 0,
            expiration_ms: expiration,
            created_ms: now,
            deleted_ms: None,
            tags_json: tags_json(&tags).to_string(),
        })
        .await?;
    Ok(json!({"ActivationId": activation_id, "ActivationCode": code}))
}

fn activation_json(a: &ActivationRow, now: i64) -> Result<Value, ApiError> {
    let tags: Value = stored(
        &format!("activation {}: tags", a.activation_id),
        &a.tags_json,
    )?;
    Ok(json!({
        "ActivationId": a.activation_id,
        "Description": a.description,
        "DefaultInstanceName": a.default_instance_name,
        "IamRole": a.iam_role,
        "RegistrationLimit": a.registration_limit,
        "RegistrationsCount": a.registrations_count,
        "ExpirationDate": ts(a.expiration_ms),
        "Expired": a.expiration_ms <= now,
        "CreatedDate": ts(a.created_ms),
        "Tags": tags,
    }))
}

pub(super) async fn describe(
    c: &Coordinator,
    r: DescribeActivationsRequest,
) -> Result<Value, ApiError> {
    let page = Page::of(
        "DescribeActivations",
        r.next_token.as_deref(),
        r.max_results,
        limits::DEFAULT_PAGE_SIZE,
    )?;
    // The model limits the keys to these three.
    let filters: Vec<(String, Vec<String>)> = r
        .filters
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            (
                f.filter_key.unwrap_or_default(),
                f.filter_values.unwrap_or_default(),
            )
        })
        .collect();
    let now = now_ms();
    let mut all = Vec::new();
    for a in c.store.activations().await? {
        let keep = filters.iter().all(|(k, vs)| {
            let field = match k.as_str() {
                "ActivationIds" => &a.activation_id,
                "DefaultInstanceName" => &a.default_instance_name,
                _ => &a.iam_role,
            };
            vs.iter().any(|v| v == field)
        });
        if keep {
            all.push(activation_json(&a, now)?);
        }
    }
    Ok(page.of_list("ActivationList", all))
}

pub(super) async fn delete(c: &Coordinator, r: DeleteActivationRequest) -> Result<Value, ApiError> {
    let id = r.activation_id;
    if !c.store.delete_activation(&id, now_ms()).await? {
        return Err(ApiError::new(
            "InvalidActivationId",
            format!("DeleteActivation: activation {id} does not exist"),
        ));
    }
    Ok(json!({}))
}
