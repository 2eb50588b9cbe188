//! Command documents: CreateDocument, UpdateDocument, DeleteDocument,
//! GetDocument, DescribeDocument, ListDocuments, ListDocumentVersions,
//! UpdateDocumentDefaultVersion, and the version lookup SendCommand uses.
//!
//! Operators' documents are stored with every version; the built-in `AWS-`
//! documents come from the `documents` crate, owned by "Amazon", at version 1.
//! Every document is parsed and validated in full before it is stored, so a
//! stored document can always be sent.

use serde_json::{Value, json};
use tether_documents::{Document, DocumentFormat};
use tether_ssm::input::{
    CreateDocumentRequest, DeleteDocumentRequest, DescribeDocumentRequest, GetDocumentRequest,
    ListDocumentVersionsRequest, ListDocumentsRequest, UpdateDocumentDefaultVersionRequest,
    UpdateDocumentRequest,
};
use tether_ssm::{ApiError, limits};
use tether_store::{DocumentRow, DocumentVersionRow, VersionConflict};
use tether_util::time::now_ms;

use super::wire::{Page, stored, tag_pairs, tags_json, ts};
use crate::core::Coordinator;

/// Owner shown for the built-in documents.
const OWNER_AMAZON: &str = "Amazon";
/// Owner shown for operators' own documents (SSM shows the account).
const OWNER_SELF: &str = "Self";
/// The only document type Tether runs.
const COMMAND: &str = "Command";
/// Prefixes SSM reserves for its own documents.
const RESERVED_PREFIXES: [&str; 3] = ["aws", "amazon", "amzn"];

/// One version of a document, stored or built in, parsed.
pub struct Version {
    pub doc: Document,
    pub version: i64,
    pub version_name: Option<String>,
    pub created_ms: i64,
    pub owner: &'static str,
    pub default_version: i64,
    pub latest_version: i64,
    pub target_type: Option<String>,
    pub tags_json: String,
}

impl Version {
    fn builtin(doc: Document) -> Version {
        Version {
            doc,
            version: 1,
            version_name: None,
            created_ms: limits::BUILTIN_DOCUMENTS_CREATED_MS,
            owner: OWNER_AMAZON,
            default_version: 1,
            latest_version: 1,
            target_type: None,
            tags_json: "[]".into(),
        }
    }

    fn stored(head: &DocumentRow, v: DocumentVersionRow) -> Result<Version, ApiError> {
        let format: DocumentFormat = v.format.parse().map_err(|_| {
            ApiError::new(
                "InternalServerError",
                format!(
                    "stored document {} version {}: format {:?} is not JSON or YAML",
                    v.name, v.version, v.format
                ),
            )
        })?;
        // Stored documents were validated when they were stored.
        let doc = Document::parse_as(&v.name, &v.content, format).map_err(|e| {
            ApiError::new(
                "InternalServerError",
                format!(
                    "stored document {} version {} no longer parses: {e}",
                    v.name, v.version
                ),
            )
        })?;
        Ok(Version {
            doc,
            version: v.version,
            version_name: v.version_name,
            created_ms: v.created_ms,
            owner: OWNER_SELF,
            default_version: head.default_version,
            latest_version: head.latest_version,
            target_type: v.target_type,
            tags_json: head.tags_json.clone(),
        })
    }

    fn platform_types(&self) -> Vec<&'static str> {
        self.doc
            .platform_types()
            .iter()
            .map(|p| p.as_str())
            .collect()
    }

    fn tags(&self) -> Result<Value, ApiError> {
        stored(
            &format!("document {}: tags", self.doc.name),
            &self.tags_json,
        )
    }

    /// SSM's `DocumentDescription`.
    fn description(&self) -> Result<Value, ApiError> {
        let parameters: Vec<Value> = self
            .doc
            .parameters
            .iter()
            .map(|p| {
                let mut v =
                    json!({"Name": p.name, "Type": p.kind.as_str(), "Description": p.description});
                if let Some(d) = &p.default {
                    v["DefaultValue"] = match d {
                        Value::String(s) => json!(s),
                        other => json!(other.to_string()),
                    };
                }
                v
            })
            .collect();
        let d = json!({
            "Hash": self.doc.hash(),
            "HashType": "Sha256",
            "Name": self.doc.name,
            "Owner": self.owner,
            "CreatedDate": ts(self.created_ms),
            "Status": "Active",
            "DocumentVersion": self.version.to_string(),
            "Description": self.doc.description,
            "Parameters": parameters,
            "PlatformTypes": self.platform_types(),
            "DocumentType": COMMAND,
            "SchemaVersion": self.doc.schema_version,
            "LatestVersion": self.latest_version.to_string(),
            "DefaultVersion": self.default_version.to_string(),
            "DocumentFormat": self.doc.format.as_str(),
            "Tags": self.tags()?,
        });
        Ok(self.with_optional_names(d))
    }

    /// Adds VersionName and TargetType when the version has them.
    fn with_optional_names(&self, mut d: Value) -> Value {
        if let Some(vn) = &self.version_name {
            d["VersionName"] = json!(vn);
        }
        if let Some(t) = &self.target_type {
            d["TargetType"] = json!(t);
        }
        d
    }

    /// SSM's `DocumentIdentifier`.
    fn identifier(&self) -> Result<Value, ApiError> {
        let d = json!({
            "Name": self.doc.name,
            "CreatedDate": ts(self.created_ms),
            "Owner": self.owner,
            "PlatformTypes": self.platform_types(),
            "DocumentVersion": self.version.to_string(),
            "DocumentType": COMMAND,
            "SchemaVersion": self.doc.schema_version,
            "DocumentFormat": self.doc.format.as_str(),
            "Tags": self.tags()?,
        });
        Ok(self.with_optional_names(d))
    }
}

fn invalid_document(op: &str, name: &str) -> ApiError {
    ApiError::new(
        "InvalidDocument",
        format!("{op}: document {name:?} does not exist"),
    )
}

fn is_builtin(name: &str) -> bool {
    tether_documents::builtin(name).is_some()
}

/// A new document's name may not take a prefix SSM reserves for its own
/// (the model's pattern has checked the characters and length).
fn check_new_name(op: &str, name: &str) -> Result<(), ApiError> {
    let lower = name.to_ascii_lowercase();
    if let Some(p) = RESERVED_PREFIXES.iter().find(|p| lower.starts_with(**p)) {
        return Err(ApiError::validation(format!(
            "{op}: Name {name:?} may not begin with {p:?} (reserved for built-in documents)"
        )));
    }
    Ok(())
}

/// Refuses the members of the model Tether does not take.
fn refuse_unsupported(op: &str, requires: bool, attachments: bool) -> Result<(), ApiError> {
    for (given, member, why) in [
        (requires, "Requires", "Tether has no document dependencies"),
        (
            attachments,
            "Attachments",
            "Tether runs scripts given inline",
        ),
    ] {
        if given {
            return Err(ApiError::validation(format!(
                "{op}: {member} is not supported by Tether ({why})"
            )));
        }
    }
    Ok(())
}

/// `DocumentVersion` as requested: `$DEFAULT`, `$LATEST` or a number.
enum Wanted {
    Default,
    Latest,
    Number(i64),
}

fn wanted_version(op: &str, v: Option<&str>) -> Result<Wanted, ApiError> {
    match v {
        None | Some("$DEFAULT") => Ok(Wanted::Default),
        Some("$LATEST") => Ok(Wanted::Latest),
        Some(n) => n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 1 && !n.to_string().is_empty())
            .filter(|_| !n.starts_with('0'))
            .map(Wanted::Number)
            .ok_or_else(|| {
                ApiError::new(
                    "InvalidDocumentVersion",
                    format!(
                        "{op}: DocumentVersion {n:?} is not valid (use $DEFAULT, $LATEST or a version number)"
                    ),
                )
            }),
    }
}

/// Finds one version of a document by `DocumentVersion` and/or `VersionName`.
pub async fn find(
    c: &Coordinator,
    op: &str,
    name: &str,
    version: Option<&str>,
    version_name: Option<&str>,
) -> Result<Version, ApiError> {
    let wanted = wanted_version(op, version)?;
    let no_version = |shown: String| {
        ApiError::new(
            "InvalidDocumentVersion",
            format!("{op}: document {name} has no version {shown}"),
        )
    };
    if let Some(doc) = tether_documents::builtin(name) {
        if let Wanted::Number(n) = wanted
            && n != 1
        {
            return Err(no_version(format!("{n} (it has version 1)")));
        }
        if let Some(vn) = version_name {
            return Err(no_version(format!("named {vn:?}")));
        }
        return Ok(Version::builtin(doc));
    }
    let head = c
        .store
        .document(name)
        .await?
        .ok_or_else(|| invalid_document(op, name))?;
    let row = match (version_name, wanted) {
        (Some(vn), wanted) => {
            let row = c
                .store
                .document_version_named(name, vn)
                .await?
                .ok_or_else(|| no_version(format!("named {vn:?}")))?;
            if let Wanted::Number(n) = wanted
                && n != row.version
            {
                return Err(no_version(format!("{n} named {vn:?}")));
            }
            row
        }
        (None, wanted) => {
            let n = match wanted {
                Wanted::Default => head.default_version,
                Wanted::Latest => head.latest_version,
                Wanted::Number(n) => n,
            };
            c.store
                .document_version(name, n)
                .await?
                .ok_or_else(|| no_version(format!("{n} (latest is {})", head.latest_version)))?
        }
    };
    Version::stored(&head, row)
}

/// Parses new content in the requested format, naming what is wrong.
fn parse_content(
    op: &str,
    name: &str,
    content: &str,
    format: Option<&str>,
) -> Result<Document, ApiError> {
    if content.len() > limits::MAX_DOCUMENT_BYTES {
        return Err(ApiError::new(
            "MaxDocumentSizeExceeded",
            format!(
                "{op}: Content is {} bytes; a document may be at most {} bytes",
                content.len(),
                limits::MAX_DOCUMENT_BYTES
            ),
        ));
    }
    let format = match format {
        None => DocumentFormat::Json,
        Some(f) => f.parse().map_err(|_| {
            ApiError::validation(format!(
                "{op}: DocumentFormat {f:?} is not supported for Command documents (use JSON or YAML)"
            ))
        })?,
    };
    Document::parse_as(name, content, format).map_err(|e| {
        let kind = match e {
            tether_documents::DocumentError::UnsupportedSchemaVersion { .. } => {
                "InvalidDocumentSchemaVersion"
            }
            _ => "InvalidDocumentContent",
        };
        ApiError::new(kind, format!("{op}: {e}"))
    })
}

fn version_row(
    doc: &Document,
    version: i64,
    version_name: Option<&str>,
    target_type: Option<&str>,
    now: i64,
) -> DocumentVersionRow {
    DocumentVersionRow {
        name: doc.name.clone(),
        version,
        version_name: version_name.map(str::to_owned),
        content: doc.content.clone(),
        format: doc.format.as_str().to_owned(),
        hash: doc.hash(),
        document_type: COMMAND.to_owned(),
        schema_version: doc.schema_version.clone(),
        description: doc.description.clone(),
        target_type: target_type.map(str::to_owned),
        created_ms: now,
    }
}

pub(super) async fn create(c: &Coordinator, r: CreateDocumentRequest) -> Result<Value, ApiError> {
    let op = "CreateDocument";
    refuse_unsupported(op, r.requires.is_some(), r.attachments.is_some())?;
    let name = r.name.as_str();
    check_new_name(op, name)?;
    if let Some(t) = r.document_type.as_deref()
        && t != COMMAND
    {
        return Err(ApiError::new(
            "InvalidDocumentType",
            format!(
                "CreateDocument: DocumentType {t:?} is not supported (Tether runs Command documents)"
            ),
        ));
    }
    let tags = super::wire::given_tags(r.tags);
    let doc = parse_content(op, name, &r.content, r.document_format.as_deref())?;
    let row = version_row(
        &doc,
        1,
        r.version_name.as_deref(),
        r.target_type.as_deref(),
        now_ms(),
    );
    if !c
        .store
        .create_document(&row, &tags_json(&tags).to_string())
        .await?
    {
        return Err(ApiError::new(
            "DocumentAlreadyExists",
            format!(
                "CreateDocument: a document named {name} already exists (use UpdateDocument for a new version)"
            ),
        ));
    }
    let v = find(c, op, name, Some("1"), None).await?;
    Ok(json!({"DocumentDescription": v.description()?}))
}

pub(super) async fn update(c: &Coordinator, r: UpdateDocumentRequest) -> Result<Value, ApiError> {
    let op = "UpdateDocument";
    refuse_unsupported(op, false, r.attachments.is_some())?;
    let name = r.name.as_str();
    if is_builtin(name) {
        return Err(ApiError::new(
            "InvalidDocumentOperation",
            format!("UpdateDocument: {name} is a built-in document and cannot be changed"),
        ));
    }
    let version_name = r.version_name.as_deref();
    let latest = find(c, op, name, Some("$LATEST"), None).await?;
    // Only the latest version can be updated; leaving it out means that one.
    match wanted_version(op, Some(r.document_version.as_deref().unwrap_or("$LATEST")))? {
        Wanted::Latest => {}
        Wanted::Number(n) if n == latest.version => {}
        _ => {
            return Err(ApiError::new(
                "InvalidDocumentVersion",
                format!(
                    "UpdateDocument: only the latest version ({}, or $LATEST) of {name} can be updated",
                    latest.version
                ),
            ));
        }
    }
    let doc = parse_content(op, name, &r.content, r.document_format.as_deref())?;
    if doc.content == latest.doc.content {
        return Err(ApiError::new(
            "DuplicateDocumentContent",
            format!(
                "UpdateDocument: the content is the same as version {} of {name}",
                latest.version
            ),
        ));
    }
    let target_type = r.target_type.as_deref().or(latest.target_type.as_deref());
    let row = version_row(
        &doc,
        latest.version + 1,
        version_name,
        target_type,
        now_ms(),
    );
    match c.store.add_document_version(&row, latest.version).await? {
        Ok(()) => {}
        Err(VersionConflict::Missing) => return Err(invalid_document(op, name)),
        Err(VersionConflict::NotLatest(l)) => {
            return Err(ApiError::new(
                "InvalidDocumentVersion",
                format!("UpdateDocument: {name} changed meanwhile; its latest version is now {l}"),
            ));
        }
        Err(VersionConflict::VersionNameTaken) => {
            return Err(ApiError::new(
                "DuplicateDocumentVersionName",
                format!(
                    "UpdateDocument: another version of {name} is already named {:?}",
                    version_name.unwrap_or_default()
                ),
            ));
        }
    }
    let v = find(c, op, name, Some(&row.version.to_string()), None).await?;
    Ok(json!({"DocumentDescription": v.description()?}))
}

pub(super) async fn delete(c: &Coordinator, r: DeleteDocumentRequest) -> Result<Value, ApiError> {
    let op = "DeleteDocument";
    let name = r.name.as_str();
    if is_builtin(name) {
        return Err(ApiError::new(
            "InvalidDocumentOperation",
            format!("DeleteDocument: {name} is a built-in document and cannot be deleted"),
        ));
    }
    let (version, version_name) = (r.document_version.as_deref(), r.version_name.as_deref());
    if version.is_none() && version_name.is_none() {
        if !c.store.delete_document(name).await? {
            return Err(invalid_document(op, name));
        }
        return Ok(json!({}));
    }
    let v = find(c, op, name, version, version_name).await?;
    if v.version == v.default_version {
        return Err(ApiError::new(
            "InvalidDocumentOperation",
            format!(
                "DeleteDocument: version {} is the default version of {name}; make another version the default first, or delete the whole document",
                v.version
            ),
        ));
    }
    if !c.store.delete_document_version(name, v.version).await? {
        return Err(invalid_document(op, name));
    }
    Ok(json!({}))
}

pub(super) async fn describe(
    c: &Coordinator,
    r: DescribeDocumentRequest,
) -> Result<Value, ApiError> {
    let v = find(
        c,
        "DescribeDocument",
        &r.name,
        r.document_version.as_deref(),
        r.version_name.as_deref(),
    )
    .await?;
    Ok(json!({"Document": v.description()?}))
}

pub(super) async fn get(c: &Coordinator, r: GetDocumentRequest) -> Result<Value, ApiError> {
    let v = find(
        c,
        "GetDocument",
        &r.name,
        r.document_version.as_deref(),
        r.version_name.as_deref(),
    )
    .await?;
    let format = match r.document_format.as_deref() {
        None => v.doc.format,
        Some(f) => f.parse().map_err(|_| {
            ApiError::validation(format!(
                "GetDocument: DocumentFormat {f:?} is not available for Command documents (use JSON or YAML)"
            ))
        })?,
    };
    let mut out = json!({
        "Name": v.doc.name,
        "CreatedDate": ts(v.created_ms),
        "DocumentVersion": v.version.to_string(),
        "Status": "Active",
        "Content": v.doc.content_as(format),
        "DocumentType": COMMAND,
        "DocumentFormat": format.as_str(),
    });
    if let Some(vn) = &v.version_name {
        out["VersionName"] = json!(vn);
    }
    Ok(out)
}

/// One ListDocuments filter: a key and the values any of which must match.
struct Filter {
    key: String,
    values: Vec<String>,
}

fn list_filters(r: &ListDocumentsRequest) -> Result<Vec<Filter>, ApiError> {
    let mut out = Vec::new();
    for f in r.filters.iter().flatten() {
        out.push(Filter {
            key: f.key.clone().unwrap_or_default(),
            values: f.values.clone().unwrap_or_default(),
        });
    }
    // The model limits these keys to Name, Owner, PlatformTypes and DocumentType.
    for f in r.document_filter_list.iter().flatten() {
        out.push(Filter {
            key: f.key.clone(),
            values: vec![f.value.clone()],
        });
    }
    for f in &out {
        let known = matches!(
            f.key.as_str(),
            "Name"
                | "Owner"
                | "PlatformTypes"
                | "DocumentType"
                | "SchemaVersion"
                | "TargetType"
                | "SearchKeyword"
        ) || f.key.strip_prefix("tag:").is_some_and(|t| !t.is_empty());
        if !known {
            return Err(ApiError::new(
                "InvalidFilterKey",
                format!(
                    "ListDocuments: filter key {:?} is unknown (use Name, Owner, PlatformTypes, DocumentType, SchemaVersion, TargetType, SearchKeyword or tag:NAME)",
                    f.key
                ),
            ));
        }
        if f.values.is_empty() {
            return Err(ApiError::validation(format!(
                "ListDocuments: filter {:?} needs at least one value",
                f.key
            )));
        }
    }
    Ok(out)
}

fn matches(v: &Version, f: &Filter) -> Result<bool, ApiError> {
    let any = |pred: &dyn Fn(&str) -> bool| f.values.iter().any(|x| pred(x));
    Ok(match f.key.as_str() {
        "Name" => any(&|x| v.doc.name.starts_with(x)),
        "SearchKeyword" => any(&|x| v.doc.name.to_lowercase().contains(&x.to_lowercase())),
        "Owner" => any(&|x| match x {
            "All" | "Public" => true,
            "Amazon" => v.owner == OWNER_AMAZON,
            "Self" | "Private" => v.owner == OWNER_SELF,
            _ => false,
        }),
        "PlatformTypes" => any(&|x| v.platform_types().contains(&x)),
        "DocumentType" => any(&|x| x == COMMAND),
        "SchemaVersion" => any(&|x| v.doc.schema_version == x),
        "TargetType" => any(&|x| v.target_type.as_deref() == Some(x)),
        key => {
            let tag = key.strip_prefix("tag:").unwrap_or_default();
            tag_pairs(&format!("document {}", v.doc.name), &v.tags_json)?
                .iter()
                .any(|(k, val)| k == tag && any(&|x| x == val))
        }
    })
}

pub(super) async fn list(c: &Coordinator, r: ListDocumentsRequest) -> Result<Value, ApiError> {
    let filters = list_filters(&r)?;
    let page = Page::of(
        "ListDocuments",
        r.next_token.as_deref(),
        r.max_results,
        limits::DEFAULT_PAGE_SIZE,
    )?;
    let mut all: Vec<Version> = tether_documents::builtin_names()
        .iter()
        .filter_map(|n| tether_documents::builtin(n))
        .map(Version::builtin)
        .collect();
    for (head, row) in c.store.documents().await? {
        all.push(Version::stored(&head, row)?);
    }
    all.sort_by(|a, b| a.doc.name.cmp(&b.doc.name));
    let mut items = Vec::new();
    for v in &all {
        let mut keep = true;
        for f in &filters {
            keep &= matches(v, f)?;
        }
        if keep {
            items.push(v.identifier()?);
        }
    }
    Ok(page.of_list("DocumentIdentifiers", items))
}

pub(super) async fn list_versions(
    c: &Coordinator,
    r: ListDocumentVersionsRequest,
) -> Result<Value, ApiError> {
    let op = "ListDocumentVersions";
    let name = r.name.as_str();
    let page = Page::of(
        op,
        r.next_token.as_deref(),
        r.max_results,
        limits::DEFAULT_PAGE_SIZE,
    )?;
    let entry = |name: &str,
                 version: i64,
                 version_name: Option<&str>,
                 created_ms: i64,
                 is_default: bool,
                 format: &str| {
        let mut v = json!({
            "Name": name,
            "DocumentVersion": version.to_string(),
            "CreatedDate": ts(created_ms),
            "IsDefaultVersion": is_default,
            "DocumentFormat": format,
            "Status": "Active",
        });
        if let Some(vn) = version_name {
            v["VersionName"] = json!(vn);
        }
        v
    };
    let items: Vec<Value> = if let Some(doc) = tether_documents::builtin(name) {
        vec![entry(
            name,
            1,
            None,
            limits::BUILTIN_DOCUMENTS_CREATED_MS,
            true,
            doc.format.as_str(),
        )]
    } else {
        let head = c
            .store
            .document(name)
            .await?
            .ok_or_else(|| invalid_document(op, name))?;
        c.store
            .document_versions(name)
            .await?
            .iter()
            .map(|r| {
                entry(
                    name,
                    r.version,
                    r.version_name.as_deref(),
                    r.created_ms,
                    r.version == head.default_version,
                    &r.format,
                )
            })
            .collect()
    };
    Ok(page.of_list("DocumentVersions", items))
}

pub(super) async fn update_default_version(
    c: &Coordinator,
    r: UpdateDocumentDefaultVersionRequest,
) -> Result<Value, ApiError> {
    let op = "UpdateDocumentDefaultVersion";
    let (name, version) = (r.name.as_str(), r.document_version.as_str());
    let Wanted::Number(n) = wanted_version(op, Some(version))? else {
        return Err(ApiError::new(
            "InvalidDocumentVersion",
            format!(
                "UpdateDocumentDefaultVersion: DocumentVersion must be a version number, got {version:?}"
            ),
        ));
    };
    let v = find(c, op, name, Some(version), None).await?;
    if v.owner == OWNER_SELF && !c.store.set_default_document_version(name, n).await? {
        return Err(invalid_document(op, name));
    }
    let mut d = json!({"Name": name, "DefaultVersion": n.to_string()});
    if let Some(vn) = &v.version_name {
        d["DefaultVersionName"] = json!(vn);
    }
    Ok(json!({"Description": d}))
}

/// Tags of a stored document (for the tagging operations).
pub(super) async fn stored_tags(c: &Coordinator, op: &str, name: &str) -> Result<String, ApiError> {
    if is_builtin(name) {
        return Err(ApiError::new(
            "InvalidResourceId",
            format!("{op}: {name} is a built-in document and carries no tags"),
        ));
    }
    Ok(c.store
        .document(name)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                "InvalidResourceId",
                format!("{op}: document {name:?} does not exist"),
            )
        })?
        .tags_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_names_keep_off_reserved_prefixes() {
        assert!(check_new_name("Op", "My-Doc_1.0").is_ok());
        for name in ["AWS-Mine", "amazon-x", "Amzn.doc"] {
            let e = check_new_name("Op", name).unwrap_err();
            assert!(e.message.contains("reserved"), "{}", e.message);
        }
    }

    #[test]
    fn versions_parse_like_ssm() {
        assert!(matches!(wanted_version("Op", None), Ok(Wanted::Default)));
        assert!(matches!(
            wanted_version("Op", Some("$LATEST")),
            Ok(Wanted::Latest)
        ));
        assert!(matches!(
            wanted_version("Op", Some("12")),
            Ok(Wanted::Number(12))
        ));
        for bad in ["0", "01", "-1", "latest", ""] {
            let e = wanted_version("Op", Some(bad)).err().unwrap();
            assert_eq!(e.kind, "InvalidDocumentVersion", "{bad}");
        }
    }
}
