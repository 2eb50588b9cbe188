//! Parameter Store, in SSM's shapes: PutParameter, GetParameter(s),
//! GetParametersByPath, DescribeParameters, GetParameterHistory,
//! Label/UnlabelParameterVersion, DeleteParameter(s); and Tether's own
//! verbs for the key-encryption keys (CreateParameterKey, ListParameterKeys,
//! RotateParameterKey).
//!
//! A SecureString is sealed by `parameter_keys` before it reaches the store
//! and opened only to answer a caller allowed `kms:Decrypt` on its key as
//! well as the `ssm:` action (checked at the door). Nothing here logs a value.
//!
//! Audit: PutParameter's `Value` (shape `PSParameterValue`, marked
//! `sensitive` in the model) must be recorded redacted, and the answers of
//! the Get operations never recorded: see [`audit_redacted_members`].

use std::collections::HashSet;

use serde_json::{Value, json};
use tether_ssm::input::{
    CreateParameterKeyRequest, DeleteParameterRequest, DeleteParametersRequest,
    DescribeParametersRequest, GetParameterHistoryRequest, GetParameterRequest,
    GetParametersByPathRequest, GetParametersRequest, LabelParameterVersionRequest,
    ListParameterKeysRequest, ParameterStringFilter, PutParameterRequest,
    RotateParameterKeyRequest, UnlabelParameterVersionRequest,
};
use tether_ssm::{ApiError, limits};
use tether_store::{LabelOutcome, ParameterVersionRow, PutOutcome};
use tether_util::time::now_ms;

use super::wire::{Page, tag_pairs, tags_json, ts};
use crate::account::Account;
use crate::authz::{Authority, Resource};
use crate::core::Coordinator;
use crate::parameter_keys::{Keyring, Sealed};

const STRING: &str = "String";
const STRING_LIST: &str = "StringList";
const SECURE_STRING: &str = "SecureString";
const TEXT: &str = "text";
const STANDARD: &str = "Standard";
/// AWS's default key for SecureStrings, taken as Tether's default.
const AWS_DEFAULT_KEY: &str = "alias/aws/ssm";

/// The request members the audit trail must record redacted (the value of
/// a parameter, whatever its type: an overwrite may not name the type).
/// The answers of GetParameter, GetParameters, GetParametersByPath and
/// GetParameterHistory carry values and must never be recorded.
pub fn audit_redacted_members(operation: &str) -> &'static [&'static str] {
    match operation {
        "PutParameter" => &["Value"],
        _ => &[],
    }
}

fn arn(account: &Account, name: &str) -> String {
    account.parameter_arn(name)
}

fn key_arn(account: &Account, key_id: &str) -> String {
    account.key_arn(key_id)
}

/// What a `name:selector` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Version(i64),
    Label(String),
}

/// Splits `name:3` or `name:label` (names hold no `:`).
pub fn split_selector(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once(':') {
        Some((n, s)) => (n, Some(s)),
        None => (name, None),
    }
}

pub(super) fn selector(s: Option<&str>) -> Selector {
    match s {
        None => Selector::Latest,
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map(Selector::Version).unwrap_or(Selector::Latest)
        }
        Some(s) => Selector::Label(s.to_string()),
    }
}

/// Checks a name as SSM does: letters, digits, `_ . -`, `/` between levels
/// of a fully qualified hierarchy, no `aws`/`ssm` prefix, at most 15 levels.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| {
        ApiError::validation(format!(
            "Parameter name {name:?}: {why}. A name can be a mix of letters, numbers and the symbols . - _; a hierarchy is fully qualified (starts with /) and divided by /, and no name may begin with aws or ssm (in any case)"
        ))
    };
    if name.chars().count() > limits::MAX_PARAMETER_NAME_CHARS {
        return Err(ApiError::validation(format!(
            "Parameter name is {} characters long; at most {} are allowed",
            name.chars().count(),
            limits::MAX_PARAMETER_NAME_CHARS
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')))
    {
        return Err(invalid(&format!("{c:?} is not allowed")));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(invalid("a name with / must be fully qualified"));
    }
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Err(invalid("it begins with a reserved prefix"));
    }
    let levels: Vec<&str> = name.strip_prefix('/').unwrap_or(name).split('/').collect();
    if levels.iter().any(|l| l.is_empty()) {
        return Err(invalid("a level is empty"));
    }
    if levels.len() > limits::MAX_PARAMETER_HIERARCHY_DEPTH {
        return Err(ApiError::new(
            "HierarchyLevelLimitExceededException",
            format!(
                "Parameter name {name:?} has {} levels; a hierarchy can have at most {}",
                levels.len(),
                limits::MAX_PARAMETER_HIERARCHY_DEPTH
            ),
        ));
    }
    Ok(())
}

/// Whether a label follows SSM's rules (letters, digits, `. - _`; not
/// starting with a digit, `aws` or `ssm`; at most 100 characters).
pub fn valid_label(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    !label.is_empty()
        && label.chars().count() <= limits::MAX_PARAMETER_LABEL_CHARS
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !label.starts_with(|c: char| c.is_ascii_digit())
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
}

/// The key a `KeyId` names: `alias/NAME`, its ARN, or AWS's default alias.
fn key_id(given: Option<&str>) -> Result<String, ApiError> {
    let Some(k) = given else {
        return Ok(limits::DEFAULT_PARAMETER_KEY.into());
    };
    let alias = match k.strip_prefix("arn:aws:kms:") {
        Some(rest) => rest.splitn(3, ':').nth(2).unwrap_or(""),
        None => k,
    };
    if alias == AWS_DEFAULT_KEY {
        return Ok(limits::DEFAULT_PARAMETER_KEY.into());
    }
    if !alias.starts_with("alias/") {
        return Err(ApiError::new(
            "InvalidKeyId",
            format!(
                "KeyId {k:?}: Tether names keys by alias (alias/NAME or its ARN); see tether list-parameter-keys"
            ),
        ));
    }
    Ok(alias.to_string())
}

fn keyring(c: &Coordinator) -> Result<&Keyring, ApiError> {
    c.parameter_keys.as_deref().ok_or_else(|| {
        ApiError::new(
            "InternalServerError",
            "this coordinator has no parameter keys loaded: SecureString parameters are unavailable",
        )
    })
}

fn not_found(name: &str) -> ApiError {
    ApiError::new("ParameterNotFound", format!("Parameter {name} not found."))
}

fn version_not_found(name: &str, selector: &str) -> ApiError {
    ApiError::new(
        "ParameterVersionNotFound",
        format!("Systems Manager could not find version {selector} of {name}."),
    )
}

/// The value to answer for `row`: in clear for String and StringList and,
/// with `decrypt`, for a SecureString the caller may decrypt (`kms:Decrypt`
/// on its key); the ciphertext otherwise, as SSM answers it.
async fn value_of(
    c: &Coordinator,
    authority: &Authority,
    row: &ParameterVersionRow,
    decrypt: bool,
) -> Result<String, ApiError> {
    if row.kind != SECURE_STRING {
        return Ok(row.value.clone().unwrap_or_default());
    }
    let s = Sealed::of(row).ok_or_else(|| {
        ApiError::new(
            "InternalServerError",
            format!(
                "stored parameter {} version {}: its encrypted value is incomplete",
                row.name, row.version
            ),
        )
    })?;
    if !decrypt {
        return Ok(s.ciphertext);
    }
    authority.check(
        "kms:Decrypt",
        &Resource::untagged(key_arn(&c.account, &s.key_id)),
    )?;
    keyring(c)?
        .unseal(&c.store, &row.name, row.version, &s)
        .await
}

/// The `Parameter` of GetParameter(s) and GetParametersByPath.
async fn parameter_json(
    c: &Coordinator,
    authority: &Authority,
    row: &ParameterVersionRow,
    selector: Option<&str>,
    decrypt: bool,
) -> Result<Value, ApiError> {
    let mut p = json!({
        "Name": row.name,
        "Type": row.kind,
        "Value": value_of(c, authority, row, decrypt).await?,
        "Version": row.version,
    });
    if let Some(s) = selector {
        p["Selector"] = json!(format!(":{s}"));
    }
    p["LastModifiedDate"] = ts(row.modified_ms);
    p["ARN"] = json!(arn(&c.account, &row.name));
    p["DataType"] = json!(row.data_type);
    Ok(p)
}

/// The version a name with an optional selector picks; `None` when the
/// parameter or the version does not exist (`Err` on the store's failure).
pub(super) async fn pick(
    c: &Coordinator,
    name: &str,
    sel: &Selector,
) -> Result<Result<ParameterVersionRow, ApiError>, ApiError> {
    let Some(p) = c.store.parameter(name).await? else {
        return Ok(Err(not_found(name)));
    };
    let version = match sel {
        Selector::Latest => return Ok(Ok(p.latest)),
        Selector::Version(v) => *v,
        Selector::Label(l) => match c.store.parameter_label(name, l).await? {
            Some(v) => v,
            None => return Ok(Err(version_not_found(name, l))),
        },
    };
    Ok(c.store
        .parameter_version(name, version)
        .await?
        .ok_or_else(|| version_not_found(name, &version.to_string())))
}

// ----- PutParameter -----

pub(super) async fn put(
    c: &Coordinator,
    authority: &Authority,
    r: PutParameterRequest,
) -> Result<Value, ApiError> {
    let name = r.name.as_str();
    check_name(name)?;
    if r.value.is_empty() {
        return Err(ApiError::validation(format!(
            "PutParameter {name}: Value must not be empty"
        )));
    }
    if r.value.len() > limits::MAX_PARAMETER_VALUE_BYTES {
        return Err(ApiError::validation(format!(
            "PutParameter {name}: the value is {} bytes; Standard tier parameters support at most {} (Tether has no Advanced tier)",
            r.value.len(),
            limits::MAX_PARAMETER_VALUE_BYTES
        )));
    }
    match r.tier.as_deref() {
        None | Some(STANDARD) | Some("Intelligent-Tiering") => {}
        Some(t) => {
            return Err(ApiError::validation(format!(
                "PutParameter {name}: Tier {t:?} is not available; Tether stores Standard parameters (values up to {} bytes)",
                limits::MAX_PARAMETER_VALUE_BYTES
            )));
        }
    }
    if r.policies.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(ApiError::new(
            "InvalidPolicyTypeException",
            format!(
                "PutParameter {name}: parameter policies need the Advanced tier, which Tether does not have"
            ),
        ));
    }
    if let Some(d) = r.data_type.as_deref()
        && d != TEXT
    {
        return Err(ApiError::validation(format!(
            "PutParameter {name}: the following data type is not supported: {d} (Tether stores DataType text)"
        )));
    }
    let current = c.store.parameter(name).await?;
    if current.is_some() && r.overwrite != Some(true) {
        return Err(already_exists(name));
    }
    if current.is_some() && r.tags.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::validation(
            "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
        ));
    }
    let prev = current.as_ref().map(|p| &p.latest);
    let kind = match (r.r#type.as_deref(), prev) {
        (Some(t), _) => t.to_string(),
        (None, Some(p)) => p.kind.clone(),
        (None, None) => {
            return Err(ApiError::validation(format!(
                "PutParameter {name}: a parameter type is required when you create a parameter"
            )));
        }
    };
    if r.key_id.is_some() && kind != SECURE_STRING {
        return Err(ApiError::validation(format!(
            "PutParameter {name}: KeyId is for SecureString parameters only (this one is {kind})"
        )));
    }
    let description = r
        .description
        .clone()
        .or_else(|| prev.and_then(|p| p.description.clone()));
    let allowed_pattern = r
        .allowed_pattern
        .clone()
        .or_else(|| prev.and_then(|p| p.allowed_pattern.clone()))
        .filter(|p| !p.is_empty());
    if let Some(pattern) = &allowed_pattern {
        let re = fancy_regex::Regex::new(pattern).map_err(|e| {
            ApiError::new(
                "InvalidAllowedPatternException",
                format!("PutParameter {name}: AllowedPattern {pattern:?} is not a valid regular expression: {e}"),
            )
        })?;
        if !re.is_match(&r.value).unwrap_or(false) {
            return Err(ApiError::new(
                "ParameterPatternMismatchException",
                format!(
                    "PutParameter {name}: the value does not match the AllowedPattern {pattern:?}"
                ),
            ));
        }
    }
    let tags = super::wire::given_tags(r.tags);
    if tags.len() > limits::MAX_TAGS_PER_RESOURCE {
        return Err(ApiError::new(
            "TooManyTagsError",
            format!(
                "PutParameter {name}: {} tags; at most {} are allowed",
                tags.len(),
                limits::MAX_TAGS_PER_RESOURCE
            ),
        ));
    }
    let expected = prev.map(|p| p.version);
    let version = expected.unwrap_or(0) + 1;
    let mut row = ParameterVersionRow {
        name: name.to_string(),
        version,
        kind: kind.clone(),
        data_type: TEXT.into(),
        tier: STANDARD.into(),
        description,
        allowed_pattern,
        value: None,
        key_id: None,
        key_generation: None,
        data_key: None,
        ciphertext: None,
        modified_ms: now_ms(),
        modified_by: authority.arn().to_string(),
    };
    if kind == SECURE_STRING {
        let key = match (&r.key_id, prev) {
            (Some(k), _) => key_id(Some(k))?,
            (None, Some(p)) if p.kind == SECURE_STRING => p
                .key_id
                .clone()
                .unwrap_or_else(|| limits::DEFAULT_PARAMETER_KEY.into()),
            (None, _) => key_id(None)?,
        };
        authority.check(
            "kms:Encrypt",
            &Resource::untagged(key_arn(&c.account, &key)),
        )?;
        let s = keyring(c)?
            .seal(&c.store, &key, name, version, &r.value)
            .await?;
        row.key_id = Some(s.key_id);
        row.key_generation = Some(s.generation);
        row.data_key = Some(s.data_key);
        row.ciphertext = Some(s.ciphertext);
    } else {
        row.value = Some(r.value);
    }
    let outcome = c
        .store
        .put_parameter(
            &row,
            expected,
            r.overwrite == Some(true),
            &tags_json(&tags).to_string(),
            limits::MAX_PARAMETER_VERSIONS,
            limits::MAX_PARAMETERS,
        )
        .await?;
    match outcome {
        PutOutcome::Stored { version } => Ok(json!({"Version": version, "Tier": STANDARD})),
        PutOutcome::AlreadyExists => Err(already_exists(name)),
        PutOutcome::Raced => Err(ApiError::new(
            "TooManyUpdates",
            format!(
                "PutParameter {name}: another request changed the parameter at the same time; try again"
            ),
        )),
        PutOutcome::OldestLabelled { version, labels } => Err(ApiError::new(
            "ParameterMaxVersionLimitExceeded",
            format!(
                "Parameter {name} has {} versions, the most it may keep, and its oldest (version {version}) has labels {}: remove them (unlabel-parameter-version) or delete the parameter before storing another version",
                limits::MAX_PARAMETER_VERSIONS,
                labels.join(", ")
            ),
        )),
        PutOutcome::TooManyParameters => Err(ApiError::new(
            "ParameterLimitExceeded",
            format!(
                "PutParameter {name}: the account already has {} parameters, the most it may have",
                limits::MAX_PARAMETERS
            ),
        )),
    }
}

fn already_exists(name: &str) -> ApiError {
    ApiError::new(
        "ParameterAlreadyExists",
        format!(
            "The parameter {name} already exists. To overwrite this value, set the overwrite option in the request to true."
        ),
    )
}

// ----- GetParameter(s) -----

pub(super) async fn get(
    c: &Coordinator,
    authority: &Authority,
    r: GetParameterRequest,
) -> Result<Value, ApiError> {
    let (name, sel) = split_selector(&r.name);
    let row = pick(c, name, &selector(sel)).await??;
    let decrypt = r.with_decryption == Some(true);
    Ok(json!({"Parameter": parameter_json(c, authority, &row, sel, decrypt).await?}))
}

pub(super) async fn get_many(
    c: &Coordinator,
    authority: &Authority,
    r: GetParametersRequest,
) -> Result<Value, ApiError> {
    let decrypt = r.with_decryption == Some(true);
    let mut found = Vec::new();
    let mut invalid = Vec::new();
    let mut seen = HashSet::new();
    for given in &r.names {
        if !seen.insert(given.as_str()) {
            continue;
        }
        let (name, sel) = split_selector(given);
        match pick(c, name, &selector(sel)).await? {
            Ok(row) => found.push(parameter_json(c, authority, &row, sel, decrypt).await?),
            Err(_) => invalid.push(json!(given)),
        }
    }
    Ok(json!({"Parameters": found, "InvalidParameters": invalid}))
}

// ----- filters -----

/// A ParameterStringFilter as checked for the operation using it.
struct Filter {
    key: String,
    option: String,
    values: Vec<String>,
}

impl Filter {
    fn matches(&self, actual: &str) -> bool {
        match self.option.as_str() {
            "BeginsWith" => self.values.iter().any(|v| actual.starts_with(v.as_str())),
            "Contains" => self.values.iter().any(|v| actual.contains(v.as_str())),
            _ => self.values.iter().any(|v| v == actual),
        }
    }
}

/// Checks `filters` for `op`: `keys` are the keys it takes, each with its
/// options (the first is the default).
fn check_filters(
    op: &str,
    filters: Vec<ParameterStringFilter>,
    keys: &[(&str, &[&str])],
) -> Result<Vec<Filter>, ApiError> {
    let mut out = Vec::new();
    for f in filters {
        let lookup = if f.key.starts_with("tag:") {
            "tag:"
        } else {
            f.key.as_str()
        };
        let Some((_, options)) = keys.iter().find(|(k, _)| *k == lookup) else {
            return Err(ApiError::new(
                "InvalidFilterKey",
                format!(
                    "{op}: filter key {:?} is not valid here (use {})",
                    f.key,
                    keys.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        let option = f.option.clone().unwrap_or_else(|| options[0].to_string());
        if !options.contains(&option.as_str()) {
            return Err(ApiError::new(
                "InvalidFilterOption",
                format!(
                    "{op}: filter {:?} takes the options {}, not {option:?}",
                    f.key,
                    options.join(", ")
                ),
            ));
        }
        let values = f.values.unwrap_or_default();
        if values.is_empty() && lookup != "tag:" {
            return Err(ApiError::new(
                "InvalidFilterValue",
                format!("{op}: filter {:?} needs at least one value", f.key),
            ));
        }
        if f.key == "Path"
            && let Some(v) = values.iter().find(|v| !v.starts_with('/'))
        {
            return Err(ApiError::new(
                "InvalidFilterValue",
                format!("{op}: Path filter value {v:?} must start with /"),
            ));
        }
        if f.key == "Type"
            && let Some(v) = values
                .iter()
                .find(|v| ![STRING, STRING_LIST, SECURE_STRING].contains(&v.as_str()))
        {
            return Err(ApiError::new(
                "InvalidFilterValue",
                format!("{op}: Type filter value {v:?} is not String, StringList or SecureString"),
            ));
        }
        out.push(Filter {
            key: f.key,
            option,
            values,
        });
    }
    Ok(out)
}

/// Whether `name` lies under `path` (one level below it, or any level when
/// `recursive`).
fn under(name: &str, path: &str, recursive: bool) -> bool {
    let base = path.trim_end_matches('/');
    let Some(rest) = name.strip_prefix(base).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    !rest.is_empty() && (recursive || !rest.contains('/'))
}

// ----- GetParametersByPath -----

pub(super) async fn by_path(
    c: &Coordinator,
    authority: &Authority,
    r: GetParametersByPathRequest,
) -> Result<Value, ApiError> {
    let op = "GetParametersByPath";
    let path = r.path.as_str();
    if !path.starts_with('/') {
        return Err(ApiError::validation(format!(
            "{op}: Path {path:?} must be fully qualified (start with /)"
        )));
    }
    if path != "/" {
        check_name(path.trim_end_matches('/'))?;
    }
    let filters = check_filters(
        op,
        r.parameter_filters.unwrap_or_default(),
        &[
            ("Type", &["Equals", "BeginsWith"]),
            ("KeyId", &["Equals", "BeginsWith"]),
            ("Label", &["Equals"]),
        ],
    )?;
    let page = Page::of(
        op,
        r.next_token.as_deref(),
        r.max_results,
        limits::PARAMETERS_BY_PATH_PAGE,
    )?;
    let recursive = r.recursive == Some(true);
    let prefix = format!("{}/", path.trim_end_matches('/'));
    let mut rows = Vec::new();
    for p in c.store.parameters_with_prefix(&prefix).await? {
        if !under(&p.latest.name, path, recursive) {
            continue;
        }
        let mut row = p.latest;
        if let Some(label) = filters.iter().find(|f| f.key == "Label") {
            let labels = c.store.parameter_labels(&row.name).await?;
            let Some(v) = labels
                .iter()
                .find(|(l, _)| label.values.contains(l))
                .map(|(_, v)| *v)
            else {
                continue;
            };
            match c.store.parameter_version(&row.name, v).await? {
                Some(labelled) => row = labelled,
                None => continue,
            }
        }
        let keep = filters.iter().all(|f| match f.key.as_str() {
            "Type" => f.matches(&row.kind),
            "KeyId" => row.key_id.as_deref().is_some_and(|k| f.matches(k)),
            _ => true,
        });
        if keep {
            rows.push(row);
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let decrypt = r.with_decryption == Some(true);
    let start = usize::try_from(page.offset).unwrap_or(usize::MAX);
    let total = rows.len();
    let mut packer = page.packer();
    let mut taken = 0;
    for row in rows.iter().skip(start) {
        let p = parameter_json(c, authority, row, None, decrypt).await?;
        if !packer.push(p) {
            break;
        }
        taken += 1;
    }
    Ok(page.answer(
        "Parameters",
        packer,
        taken,
        start.saturating_add(taken) < total,
    ))
}

// ----- DescribeParameters -----

fn metadata_json(account: &Account, row: &ParameterVersionRow) -> Value {
    let mut m = json!({
        "Name": row.name,
        "ARN": arn(account, &row.name),
        "Type": row.kind,
    });
    if let Some(k) = &row.key_id {
        m["KeyId"] = json!(k);
    }
    m["LastModifiedDate"] = ts(row.modified_ms);
    m["LastModifiedUser"] = json!(row.modified_by);
    if let Some(d) = &row.description {
        m["Description"] = json!(d);
    }
    if let Some(p) = &row.allowed_pattern {
        m["AllowedPattern"] = json!(p);
    }
    m["Version"] = json!(row.version);
    m["Tier"] = json!(row.tier);
    m["Policies"] = json!([]);
    m["DataType"] = json!(row.data_type);
    m
}

pub(super) async fn describe(
    c: &Coordinator,
    r: DescribeParametersRequest,
) -> Result<Value, ApiError> {
    let op = "DescribeParameters";
    let legacy = r.filters.unwrap_or_default();
    let string_filters = r.parameter_filters.unwrap_or_default();
    if !legacy.is_empty() && !string_filters.is_empty() {
        return Err(ApiError::validation(format!(
            "{op}: Filters and ParameterFilters cannot be used together"
        )));
    }
    if r.shared == Some(true) {
        return Err(ApiError::validation(format!(
            "{op}: Shared parameters come from other AWS accounts; Tether has none"
        )));
    }
    // The legacy Filters: Name begins with, Type and KeyId equal.
    let mut filters: Vec<Filter> = legacy
        .into_iter()
        .map(|f| Filter {
            option: if f.key == "Name" {
                "BeginsWith"
            } else {
                "Equals"
            }
            .into(),
            key: f.key,
            values: f.values,
        })
        .collect();
    filters.extend(check_filters(
        op,
        string_filters,
        &[
            ("Name", &["Equals", "BeginsWith", "Contains"]),
            ("Type", &["Equals", "BeginsWith"]),
            ("KeyId", &["Equals", "BeginsWith"]),
            ("Path", &["OneLevel", "Recursive"]),
            ("Tier", &["Equals", "BeginsWith"]),
            ("DataType", &["Equals"]),
            ("tag:", &["Equals", "BeginsWith"]),
        ],
    )?);
    let page = Page::of(
        op,
        r.next_token.as_deref(),
        r.max_results,
        limits::DESCRIBE_PARAMETERS_PAGE,
    )?;
    let mut out = Vec::new();
    for p in c.store.parameters_with_prefix("").await? {
        let row = &p.latest;
        let tags = tag_pairs(&format!("parameter {}", row.name), &p.tags_json)?;
        let keep = filters.iter().all(|f| match f.key.as_str() {
            "Name" => {
                // SSM matches names with or without their leading slash.
                f.matches(&row.name)
                    || f.values.iter().any(|v| {
                        let (a, b) = (v.trim_start_matches('/'), row.name.trim_start_matches('/'));
                        match f.option.as_str() {
                            "BeginsWith" => b.starts_with(a),
                            "Contains" => b.contains(a),
                            _ => a == b,
                        }
                    })
            }
            "Type" => f.matches(&row.kind),
            "KeyId" => row.key_id.as_deref().is_some_and(|k| f.matches(k)),
            "Tier" => f.matches(&row.tier),
            "DataType" => f.matches(&row.data_type),
            "Path" => f
                .values
                .iter()
                .any(|v| under(&row.name, v, f.option == "Recursive")),
            k => {
                let key = k.strip_prefix("tag:").unwrap_or(k);
                tags.iter()
                    .any(|(tk, tv)| tk == key && (f.values.is_empty() || f.matches(tv)))
            }
        });
        if keep {
            out.push(metadata_json(&c.account, row));
        }
    }
    Ok(page.of_list("Parameters", out))
}

// ----- GetParameterHistory -----

pub(super) async fn history(
    c: &Coordinator,
    authority: &Authority,
    r: GetParameterHistoryRequest,
) -> Result<Value, ApiError> {
    let op = "GetParameterHistory";
    let name = r.name.as_str();
    let page = Page::of(
        op,
        r.next_token.as_deref(),
        r.max_results,
        limits::PARAMETER_HISTORY_PAGE,
    )?;
    let versions = c.store.parameter_history(name).await?;
    if versions.is_empty() {
        return Err(not_found(name));
    }
    let labels = c.store.parameter_labels(name).await?;
    let decrypt = r.with_decryption == Some(true);
    let start = usize::try_from(page.offset).unwrap_or(usize::MAX);
    let total = versions.len();
    let mut packer = page.packer();
    let mut taken = 0;
    for row in versions.iter().skip(start) {
        let mut h = metadata_json(&c.account, row);
        if let Some(m) = h.as_object_mut() {
            m.remove("ARN");
        }
        h["Value"] = json!(value_of(c, authority, row, decrypt).await?);
        h["Labels"] = json!(
            labels
                .iter()
                .filter(|(_, v)| *v == row.version)
                .map(|(l, _)| l)
                .collect::<Vec<_>>()
        );
        if !packer.push(h) {
            break;
        }
        taken += 1;
    }
    Ok(page.answer(
        "Parameters",
        packer,
        taken,
        start.saturating_add(taken) < total,
    ))
}

// ----- labels -----

pub(super) async fn label(
    c: &Coordinator,
    r: LabelParameterVersionRequest,
) -> Result<Value, ApiError> {
    let name = r.name.as_str();
    let Some(p) = c.store.parameter(name).await? else {
        return Err(not_found(name));
    };
    let version = r.parameter_version.unwrap_or(p.latest.version);
    let (valid, invalid): (Vec<String>, Vec<String>) =
        r.labels.into_iter().partition(|l| valid_label(l));
    if !valid.is_empty() {
        match c
            .store
            .label_parameter_version(
                name,
                version,
                &valid,
                limits::MAX_LABELS_PER_PARAMETER_VERSION,
            )
            .await?
        {
            LabelOutcome::Labelled => {}
            LabelOutcome::NoSuchParameter => return Err(not_found(name)),
            LabelOutcome::NoSuchVersion => {
                return Err(version_not_found(name, &version.to_string()));
            }
            LabelOutcome::TooMany { count } => {
                return Err(ApiError::new(
                    "ParameterVersionLabelLimitExceeded",
                    format!(
                        "Version {version} of {name} would have {count} labels; a parameter version can have at most {}",
                        limits::MAX_LABELS_PER_PARAMETER_VERSION
                    ),
                ));
            }
        }
    } else if c.store.parameter_version(name, version).await?.is_none() {
        return Err(version_not_found(name, &version.to_string()));
    }
    Ok(json!({"InvalidLabels": invalid, "ParameterVersion": version}))
}

pub(super) async fn unlabel(
    c: &Coordinator,
    r: UnlabelParameterVersionRequest,
) -> Result<Value, ApiError> {
    let name = r.name.as_str();
    if c.store.parameter(name).await?.is_none() {
        return Err(not_found(name));
    }
    if c.store
        .parameter_version(name, r.parameter_version)
        .await?
        .is_none()
    {
        return Err(version_not_found(name, &r.parameter_version.to_string()));
    }
    let removed = c
        .store
        .unlabel_parameter_version(name, r.parameter_version, &r.labels)
        .await?;
    let invalid: Vec<&String> = r.labels.iter().filter(|l| !removed.contains(l)).collect();
    Ok(json!({"RemovedLabels": removed, "InvalidLabels": invalid}))
}

// ----- DeleteParameter(s) -----

pub(super) async fn delete(c: &Coordinator, r: DeleteParameterRequest) -> Result<Value, ApiError> {
    if c.store.delete_parameter(&r.name).await? {
        Ok(json!({}))
    } else {
        Err(not_found(&r.name))
    }
}

pub(super) async fn delete_many(
    c: &Coordinator,
    r: DeleteParametersRequest,
) -> Result<Value, ApiError> {
    let mut deleted = Vec::new();
    let mut invalid = Vec::new();
    for name in r.names {
        if c.store.delete_parameter(&name).await? {
            deleted.push(name);
        } else if !deleted.contains(&name) {
            invalid.push(name);
        }
    }
    Ok(json!({"DeletedParameters": deleted, "InvalidParameters": invalid}))
}

// ----- the key-encryption keys (Tether's own verbs) -----

async fn key_json(c: &Coordinator, key_id: &str) -> Result<Value, ApiError> {
    let counts = c.store.data_key_counts().await?;
    let key = c
        .store
        .parameter_keys()
        .await?
        .into_iter()
        .find(|k| k.key_id == key_id)
        .ok_or_else(|| {
            ApiError::new(
                "InvalidKeyId",
                format!("KeyId {key_id:?} names no parameter key"),
            )
        })?;
    Ok(one_key_json(c, &key, &counts))
}

fn one_key_json(
    c: &Coordinator,
    key: &tether_store::ParameterKeyRow,
    counts: &[(String, i64)],
) -> Value {
    let mut k = json!({
        "KeyId": key.key_id,
        "KeyArn": key_arn(&c.account, &key.key_id),
        "Description": key.description,
        "Generation": key.generation,
        "CreationDate": ts(key.created_ms),
    });
    if let Some(r) = key.rotated_ms {
        k["RotatedDate"] = ts(r);
    }
    k["WrappedDataKeys"] = json!(
        counts
            .iter()
            .find(|(id, _)| *id == key.key_id)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    );
    k
}

pub(super) async fn create_key(
    c: &Coordinator,
    r: CreateParameterKeyRequest,
) -> Result<Value, ApiError> {
    let id = key_id(Some(&r.key_id))?;
    if id == limits::DEFAULT_PARAMETER_KEY || r.key_id.starts_with("alias/aws/") {
        return Err(ApiError::new(
            "AlreadyExistsException",
            format!("parameter key {} already exists (the default)", r.key_id),
        ));
    }
    keyring(c)?
        .create(
            &c.store,
            &id,
            r.description.as_deref().unwrap_or(""),
            now_ms(),
        )
        .await?;
    tracing::info!(key_id = %id, "parameter key created");
    Ok(json!({"Key": key_json(c, &id).await?}))
}

pub(super) async fn list_keys(
    c: &Coordinator,
    _r: ListParameterKeysRequest,
) -> Result<Value, ApiError> {
    let counts = c.store.data_key_counts().await?;
    let keys: Vec<Value> = c
        .store
        .parameter_keys()
        .await?
        .iter()
        .map(|k| one_key_json(c, k, &counts))
        .collect();
    Ok(json!({"Keys": keys}))
}

pub(super) async fn rotate_key(
    c: &Coordinator,
    r: RotateParameterKeyRequest,
) -> Result<Value, ApiError> {
    let id = key_id(Some(&r.key_id))?;
    let (generation, rewrapped) = keyring(c)?.rotate(&c.store, &id, now_ms()).await?;
    tracing::info!(key_id = %id, generation, rewrapped, "parameter key rotated");
    Ok(json!({"Key": key_json(c, &id).await?, "RewrappedDataKeys": rewrapped}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_ssm_rules() {
        for ok in ["db-password", "/a/b/c", "/x.y_z-1", "a.b"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for (bad, kind) in [
            ("a/b", "ValidationException"),
            ("/a//b", "ValidationException"),
            ("/a/b/", "ValidationException"),
            ("awsthing", "ValidationException"),
            ("/SSM/x", "ValidationException"),
            ("/a b", "ValidationException"),
            ("/a:b", "ValidationException"),
        ] {
            assert_eq!(check_name(bad).map_err(|e| e.kind), Err(kind), "{bad}");
        }
        let deep15 = "/l".repeat(15);
        assert_eq!(check_name(&deep15), Ok(()));
        let deep16 = "/l".repeat(16);
        assert_eq!(
            check_name(&deep16).map_err(|e| e.kind),
            Err("HierarchyLevelLimitExceededException")
        );
        let long = format!("/{}", "x".repeat(limits::MAX_PARAMETER_NAME_CHARS));
        assert_eq!(
            check_name(&long).map_err(|e| e.kind),
            Err("ValidationException")
        );
    }

    #[test]
    fn selectors_split_versions_from_labels() {
        assert_eq!(split_selector("/a/b:3"), ("/a/b", Some("3")));
        assert_eq!(selector(Some("3")), Selector::Version(3));
        assert_eq!(selector(Some("prod")), Selector::Label("prod".into()));
        assert_eq!(selector(None), Selector::Latest);
    }

    #[test]
    fn labels_follow_ssm_rules() {
        assert!(valid_label("prod"));
        assert!(valid_label("release-1.2_x"));
        for bad in ["1st", "awsx", "SSMy", "a/b", "", &"x".repeat(101)] {
            assert!(!valid_label(bad), "{bad}");
        }
    }

    #[test]
    fn paths_one_level_or_recursive() {
        assert!(under("/a/b", "/a", false));
        assert!(under("/a/b", "/a/", false));
        assert!(!under("/a/b/c", "/a", false));
        assert!(under("/a/b/c", "/a", true));
        assert!(!under("/ab/c", "/a", true));
        assert!(under("/x", "/", false));
        assert!(!under("/x/y", "/", false));
        assert!(!under("/a", "/a", true));
    }

    #[test]
    fn key_ids_by_alias() {
        assert_eq!(key_id(None).unwrap(), "alias/tether/default");
        assert_eq!(
            key_id(Some("alias/aws/ssm")).unwrap(),
            "alias/tether/default"
        );
        assert_eq!(
            key_id(Some("arn:aws:kms:us-east-1:123456789012:alias/team")).unwrap(),
            "alias/team"
        );
        assert_eq!(
            key_id(Some("1234abcd-12ab-34cd-56ef-1234567890ab")).map_err(|e| e.kind),
            Err("InvalidKeyId")
        );
    }
}
