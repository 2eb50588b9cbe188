//! IAM's wildcards: `*` matches any run of characters (none included) and `?`
//! exactly one, anywhere in the pattern — across ARN segments too, as IAM
//! matches a resource.

/// Whether `text` matches `pattern`; `fold` compares ASCII letters without
/// case (actions), else exactly (resources, `StringLike`).
pub fn matches(pattern: &str, text: &str, fold: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let eq = |a: char, b: char| {
        if fold {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // Greedy with backtracking to the last star: linear in practice, and
    // never worse than |p|·|t|.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_as_iam_has_them() {
        for (pattern, text, fold, want) in [
            ("*", "", false, true),
            ("*", "anything:at/all", false, true),
            ("ssm:*", "ssm:SendCommand", true, true),
            ("ssm:*", "SSM:SendCommand", true, true),
            ("ssm:Send*", "ssm:sendcommand", true, true),
            ("ssm:Send*", "ssm:GetDocument", true, false),
            ("ssm:Get?ocument", "ssm:GetDocument", true, true),
            ("ssm:Get?ocument", "ssm:GetDDocument", true, false),
            (
                "arn:aws:ssm:*:*:managed-instance/mi-*",
                "arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-0123456789abcdef0",
                false,
                true,
            ),
            (
                "arn:aws:ssm:*:*:managed-instance/mi-*",
                "arn:aws:ssm:us-east-1:123456789012:document/AWS-RunShellScript",
                false,
                false,
            ),
            (
                "arn:aws:ssm:us-east-1:*:document/AWS-RunShellScript",
                "arn:aws:ssm:us-east-1:123456789012:document/aws-runshellscript",
                false,
                false,
            ),
            ("a*b*c", "aXXbYYc", false, true),
            ("a*b*c", "aXXbYY", false, false),
            ("*a", "bbbba", false, true),
            ("é?", "éü", false, true),
        ] {
            assert_eq!(matches(pattern, text, fold), want, "{pattern} ~ {text}");
        }
    }
}
