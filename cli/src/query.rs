//! `--query`: a JMESPath expression applied to the answer before it is
//! printed, as the aws CLI applies it (after the pages are merged, or to
//! each page for `--output text`; see `lib.rs`). Evaluated by the
//! `jmespath` crate (the JMESPath project's Rust implementation), whose
//! objects are sorted maps; Python's keep insertion order, so the members
//! of each object in the result are put back in the order the aws CLI
//! prints: a multi-select hash's as the expression names them, any other
//! object's as the answer had them.

use std::collections::HashMap;

use jmespath::ast::Ast;
use serde_json::{Map, Value};

use crate::errors::CliError;

/// A compiled `--query`.
pub struct Query {
    text: String,
    expression: jmespath::Expression<'static>,
    /// Key orders of the expression's multi-select hashes.
    hash_orders: Vec<Vec<String>>,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query").field("text", &self.text).finish()
    }
}

impl Query {
    /// Compiles `text`; a bad expression is refused as the aws CLI refuses it.
    pub fn compile(text: &str) -> Result<Query, CliError> {
        let expression = jmespath::compile(text).map_err(|e| CliError::Query {
            query: text.to_owned(),
            message: format!("Invalid jmespath expression: {e}"),
        })?;
        let mut hash_orders = Vec::new();
        collect_hashes(expression.as_ast(), &mut hash_orders);
        Ok(Query {
            text: text.to_owned(),
            expression,
            hash_orders,
        })
    }

    /// The expression's value for `data`, objects in the aws CLI's order.
    pub fn search(&self, data: &Value) -> Result<Value, CliError> {
        let found = self
            .expression
            .search(data)
            .map_err(|e| CliError::General(e.to_string()))?;
        let mut value =
            serde_json::to_value(&*found).map_err(|e| CliError::General(e.to_string()))?;
        let mut orders: HashMap<Vec<String>, Vec<String>> = HashMap::new();
        for order in &self.hash_orders {
            orders.entry(sorted(order)).or_insert_with(|| order.clone());
        }
        collect_objects(data, &mut orders);
        reorder(&mut value, &orders);
        Ok(value)
    }
}

fn sorted(keys: &[String]) -> Vec<String> {
    let mut s = keys.to_vec();
    s.sort();
    s
}

fn collect_hashes(ast: &Ast, out: &mut Vec<Vec<String>>) {
    match ast {
        Ast::MultiHash { elements, .. } => {
            out.push(elements.iter().map(|kv| kv.key.clone()).collect());
            for kv in elements {
                collect_hashes(&kv.value, out);
            }
        }
        Ast::Comparison { lhs, rhs, .. }
        | Ast::Projection { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. }
        | Ast::Subexpr { lhs, rhs, .. } => {
            collect_hashes(lhs, out);
            collect_hashes(rhs, out);
        }
        Ast::Condition {
            predicate, then, ..
        } => {
            collect_hashes(predicate, out);
            collect_hashes(then, out);
        }
        Ast::Expref { ast, .. } => collect_hashes(ast, out),
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => {
            collect_hashes(node, out)
        }
        Ast::Function { args, .. } => args.iter().for_each(|a| collect_hashes(a, out)),
        Ast::MultiList { elements, .. } => elements.iter().for_each(|a| collect_hashes(a, out)),
        _ => {}
    }
}

fn collect_objects(v: &Value, out: &mut HashMap<Vec<String>, Vec<String>>) {
    match v {
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            out.entry(sorted(&keys)).or_insert(keys);
            o.values().for_each(|x| collect_objects(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| collect_objects(x, out)),
        _ => {}
    }
}

fn reorder(v: &mut Value, orders: &HashMap<Vec<String>, Vec<String>>) {
    match v {
        Value::Object(o) => {
            o.values_mut().for_each(|x| reorder(x, orders));
            let keys: Vec<String> = o.keys().cloned().collect();
            if let Some(order) = orders.get(&sorted(&keys)) {
                let mut taken = std::mem::take(o);
                let mut out = Map::new();
                for k in order {
                    if let Some(x) = taken.remove(k) {
                        out.insert(k.clone(), x);
                    }
                }
                out.extend(taken);
                *o = out;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| reorder(x, orders)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_keep_the_aws_clis_member_order() {
        let data = json!({"InstanceInformationList": [
            {"InstanceId": "mi-1", "PingStatus": "Online", "AgentVersion": "1"},
            {"InstanceId": "mi-2", "PingStatus": "ConnectionLost", "AgentVersion": "1"},
        ]});
        let q =
            Query::compile("InstanceInformationList[?PingStatus=='Online'].InstanceId").unwrap();
        assert_eq!(q.search(&data).unwrap(), json!(["mi-1"]));
        let q = Query::compile("InstanceInformationList[0]").unwrap();
        let first = q.search(&data).unwrap();
        let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["InstanceId", "PingStatus", "AgentVersion"]);
        let q = Query::compile("InstanceInformationList[].{Z: InstanceId, A: PingStatus}").unwrap();
        let hashes = q.search(&data).unwrap();
        let keys: Vec<&String> = hashes[0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["Z", "A"]);
        assert_eq!(
            Query::compile("nothing").unwrap().search(&data).unwrap(),
            Value::Null
        );
        let err = Query::compile("Commands[").unwrap_err();
        assert_eq!(err.exit(), 252);
        assert!(
            err.to_string()
                .starts_with("Bad value for --query Commands[: Invalid jmespath expression: "),
            "{err}"
        );
    }
}
