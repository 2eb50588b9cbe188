//! Tether's size caps where the model sets none (`tether_ssm::limits`),
//! checked once for every request at the door, so that the HTTPS API and the
//! operator's gRPC channel hold every request to the same bytes.

use std::collections::BTreeMap;

use tether_ssm::{ApiError, Request, limits};

/// The body of any request: refused before it is parsed.
pub fn check_body(operation: &str, body: &[u8]) -> Result<(), ApiError> {
    if body.len() > limits::MAX_REQUEST_BODY_BYTES {
        return Err(ApiError::new(
            "SerializationException",
            format!(
                "{operation}: the request body is {} bytes; at most {} bytes are accepted",
                body.len(),
                limits::MAX_REQUEST_BODY_BYTES
            ),
        ));
    }
    Ok(())
}

/// The `Parameters` of a request that has them (SendCommand, CreateAssociation,
/// UpdateAssociation): every name and value, together.
pub fn check_request(request: &Request) -> Result<(), ApiError> {
    let parameters = match request {
        Request::SendCommand(r) => r.parameters.as_ref(),
        Request::CreateAssociation(r) => r.parameters.as_ref(),
        Request::UpdateAssociation(r) => r.parameters.as_ref(),
        _ => None,
    };
    match parameters {
        Some(p) => check_parameters(request.operation().name(), p),
        None => Ok(()),
    }
}

/// The bytes of a parameter map as [`limits::MAX_PARAMETERS_BYTES`] counts them.
pub fn parameters_bytes(parameters: &BTreeMap<String, Vec<String>>) -> usize {
    parameters
        .iter()
        .map(|(name, values)| name.len() + values.iter().map(String::len).sum::<usize>())
        .sum()
}

fn check_parameters(
    operation: &str,
    parameters: &BTreeMap<String, Vec<String>>,
) -> Result<(), ApiError> {
    let bytes = parameters_bytes(parameters);
    if bytes > limits::MAX_PARAMETERS_BYTES {
        let largest = parameters
            .iter()
            .max_by_key(|(n, v)| n.len() + v.iter().map(String::len).sum::<usize>())
            .map(|(n, _)| n.as_str())
            .unwrap_or("");
        return Err(ApiError::validation(format!(
            "{operation}: Parameters are {bytes} bytes (names and values together, the largest \
             is {largest:?}); at most {} bytes are accepted — ship large scripts as a document \
             or fetch them on the node",
            limits::MAX_PARAMETERS_BYTES
        )));
    }
    Ok(())
}

/// An envelope carrying `parts` (the document's content, name, version and
/// hash, the resolved parameters as JSON) must fit
/// [`limits::MAX_ENVELOPE_BYTES`], as a poll measures it
/// ([`crate::signing::envelope_bytes`]); `what` names it for the error.
/// `sealed`: the most the values of its `{{ssm-secure:…}}` references can
/// add, sealed (see `limits::SEALED_BYTES_PER_REFERENCE_BYTE`).
pub fn check_envelope(
    operation: &str,
    what: &str,
    parts: &[&str],
    sealed: usize,
) -> Result<(), ApiError> {
    let bytes =
        crate::signing::envelope_bytes(parts.iter().map(|p| p.len()).sum::<usize>() + sealed);
    if bytes > limits::MAX_ENVELOPE_BYTES {
        return Err(ApiError::validation(format!(
            "{operation}: {what} would be sent to each node as a {bytes}-byte envelope; at most \
             {} bytes can be delivered",
            limits::MAX_ENVELOPE_BYTES
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_ssm::Operation;

    fn send(parameters: serde_json::Value) -> Request {
        let body = serde_json::json!({
            "DocumentName": "AWS-RunShellScript",
            "InstanceIds": ["mi-0123456789abcdef0"],
            "Parameters": parameters,
        });
        Request::from_json(Operation::SendCommand, body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn parameters_are_capped_names_and_values_together() {
        let at_cap = "x".repeat(limits::MAX_PARAMETERS_BYTES - "commands".len());
        assert!(check_request(&send(serde_json::json!({"commands": [at_cap]}))).is_ok());
        let half = "x".repeat(limits::MAX_PARAMETERS_BYTES / 2);
        let e = check_request(&send(
            serde_json::json!({"commands": [half.clone()], "workingDirectory": [half]}),
        ))
        .unwrap_err();
        assert_eq!(e.kind, "ValidationException");
        assert!(
            e.message
                .contains("SendCommand: Parameters are 262168 bytes")
                && e.message.contains("at most 262144 bytes"),
            "{}",
            e.message
        );
    }

    #[test]
    fn bodies_and_envelopes_are_capped() {
        assert!(check_body("SendCommand", &[b' '; limits::MAX_REQUEST_BODY_BYTES]).is_ok());
        let e = check_body(
            "SendCommand",
            &vec![b' '; limits::MAX_REQUEST_BODY_BYTES + 1],
        )
        .unwrap_err();
        assert_eq!(e.kind, "SerializationException");
        assert!(e.message.contains("4194305 bytes"), "{}", e.message);
        let big = "x".repeat(limits::MAX_ENVELOPE_BYTES);
        let e = check_envelope("SendCommand", "the command", &[&big, "{}"], 0).unwrap_err();
        assert_eq!(e.kind, "ValidationException");
        assert!(check_envelope("SendCommand", "the command", &["{}", "{}"], 0).is_ok());
    }
}
