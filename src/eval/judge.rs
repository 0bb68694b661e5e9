//! Content Quality (CQ) and Content Personalization (CP): an LLM judge (GPT-4o in the AudioRole
//! paper) rates each reply 1-10 through a user-configured OpenAI-compatible endpoint
//! (`POST {endpoint}/chat/completions`). Off unless `eval --judge FILE` is given; when the
//! endpoint cannot be reached (offline) or its key is not set, the content scores are skipped
//! with the reason and the acoustic scores stand.
//!
//! The judge file (YAML):
//!   endpoint: https://api.openai.com/v1
//!   model: gpt-4o
//!   api_key_env: OPENAI_API_KEY   # the key is read from this environment variable (optional)
//!   prompts: prompts.yaml         # relative to the judge file
//!   max_lines: 20                 # lines judged (default 20)
//!   timeout_s: 60
//!
//! The prompts file holds `system`, `content_quality` and `content_personalization`; the last
//! two may use {character}, {persona}, {context} and {reply}.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::scores::Stat;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    endpoint: String,
    model: String,
    #[serde(default)]
    api_key_env: Option<String>,
    prompts: PathBuf,
    #[serde(default = "default_max_lines")]
    max_lines: usize,
    #[serde(default = "default_timeout")]
    timeout_s: u64,
}

fn default_max_lines() -> usize {
    20
}

fn default_timeout() -> u64 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Prompts {
    system: String,
    content_quality: String,
    content_personalization: String,
}

pub struct Config {
    endpoint: String,
    model: String,
    api_key_env: Option<String>,
    prompts: Prompts,
    pub max_lines: usize,
    timeout: Duration,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let read = |p: &Path| {
            crate::recipe::node::read_document(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let file: ConfigFile =
            serde_yaml::from_str(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
        let prompts_path = path.parent().unwrap_or(Path::new(".")).join(&file.prompts);
        let prompts: Prompts = serde_yaml::from_str(&read(&prompts_path)?)
            .map_err(|e| format!("{}: {e}", prompts_path.display()))?;
        if file.max_lines == 0 {
            return Err(format!("{}: max_lines must be at least 1", path.display()));
        }
        if let Some(var) = &file.api_key_env {
            if !is_variable_name(var) {
                // Never echoed: what is there is most likely the key itself.
                return Err(format!(
                    "{}: api_key_env must be the name of an environment variable (letters, digits and _, e.g. OPENAI_API_KEY) that holds the key, not the key itself; its value is not shown",
                    path.display()
                ));
            }
        }
        Ok(Config {
            endpoint: file.endpoint.trim_end_matches('/').to_string(),
            model: file.model,
            api_key_env: file.api_key_env,
            prompts,
            max_lines: file.max_lines,
            timeout: Duration::from_secs(file.timeout_s.max(1)),
        })
    }
}

/// One reply to judge: what the character was answering, and the reply's text.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    pub id: String,
    pub context: String,
    pub reply: String,
}

/// Scores the first `max_lines` lines; `Err` is why the content side was skipped.
pub fn judge(
    config: &Config,
    character: &str,
    persona: &str,
    lines: &[Line],
) -> Result<Value, String> {
    if lines.is_empty() {
        return Err("no text replies to judge".into());
    }
    let key = match &config.api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            format!("${var} (the judge's api_key_env) is not set; content scores skipped")
        })?),
        None => None,
    };
    let agent = ureq::AgentBuilder::new().timeout(config.timeout).build();
    let url = format!("{}/chat/completions", config.endpoint);
    let ask = |template: &str, line: &Line| -> Result<f64, String> {
        let prompt = template
            .replace("{character}", character)
            .replace("{persona}", persona)
            .replace("{context}", &line.context)
            .replace("{reply}", &line.reply);
        let body = json!({
            "model": config.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": config.prompts.system},
                {"role": "user", "content": prompt},
            ],
        });
        let mut request = agent.post(&url).set("Content-Type", "application/json");
        if let Some(key) = &key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        let response = request.send_string(&body.to_string()).map_err(|e| match e {
            ureq::Error::Status(code, r) => format!(
                "{url} answered HTTP {code}: {}",
                r.into_string().unwrap_or_default().chars().take(300).collect::<String>()
            ),
            ureq::Error::Transport(t) => {
                format!("cannot reach {url} ({t}); content scores skipped, the acoustic scores are complete")
            }
        })?;
        let text = response
            .into_string()
            .map_err(|e| format!("{url}: unreadable answer: {e}"))?;
        let answer: Value =
            serde_json::from_str(&text).map_err(|e| format!("{url}: not JSON ({e}): {text}"))?;
        let content = answer["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| format!("{url}: no choices[0].message.content in {text}"))?;
        parse_score(content)
            .ok_or_else(|| format!("the judge's answer holds no score from 1 to 10: {content:?}"))
    };
    // What the endpoint says goes to logs and reports: never with the key in it.
    let ask =
        |template: &str, line: &Line| ask(template, line).map_err(|e| scrub(&e, key.as_deref()));
    let mut rows = Vec::new();
    let (mut cq, mut cp) = (Vec::new(), Vec::new());
    let picked = &lines[..lines.len().min(config.max_lines)];
    let bar = crate::progress::bar(picked.len() as u64, "LLM judge");
    for line in picked {
        let q = ask(&config.prompts.content_quality, line)?;
        let p = ask(&config.prompts.content_personalization, line)?;
        cq.push(q);
        cp.push(p);
        rows.push(
            json!({"id": line.id, "context": line.context, "reply": line.reply,
                         "content_quality": q, "content_personalization": p}),
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(json!({
        "judge": config.model,
        "endpoint": without_credentials(&config.endpoint),
        "content_quality": Stat::of(&cq),
        "content_personalization": Stat::of(&cp),
        "lines": rows,
    }))
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const REDACTED: &str = "[redacted]";

/// `text` without the key and without anything shaped like a bearer token or an API key
/// (`Bearer xyz`, `sk-...`): OpenAI-compatible servers echo the key they refused.
pub fn scrub(text: &str, key: Option<&str>) -> String {
    let mut out = match key.map(str::trim).filter(|k| k.len() >= 4) {
        Some(key) => text.replace(key, REDACTED),
        None => text.to_string(),
    };
    let token_char = |c: char| c.is_ascii_alphanumeric() || "-_.*~+/=".contains(c);
    for marker in ["bearer ", "sk-"] {
        // ASCII lowercasing keeps every byte offset, so positions in `lower` index `out`.
        let lower = out.to_ascii_lowercase();
        let mut scrubbed = String::with_capacity(out.len());
        let (mut copied, mut scanned) = (0, 0);
        for (at, _) in lower.match_indices(marker) {
            if at < scanned {
                continue;
            }
            let starts_word = out[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_ascii_alphanumeric());
            let after = at + marker.len();
            let end = after
                + out[after..]
                    .find(|c: char| !token_char(c))
                    .unwrap_or(out.len() - after);
            if starts_word && end > after {
                scrubbed.push_str(&out[copied..after]);
                scrubbed.push_str(REDACTED);
                copied = end;
            }
            scanned = end;
        }
        scrubbed.push_str(&out[copied..]);
        out = scrubbed;
    }
    out
}

/// An endpoint URL as stored in reports: without `user:password@` and without a query.
fn without_credentials(endpoint: &str) -> String {
    let endpoint = endpoint.split(['?', '#']).next().unwrap_or_default();
    match endpoint.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => endpoint.to_string(),
    }
}

/// The first number in the answer that lies in 1..=10 ("Score: 7", "7/10", "8.5").
pub fn parse_score(answer: &str) -> Option<f64> {
    let mut number = String::new();
    let mut candidates = Vec::new();
    for c in answer.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() || (c == '.' && !number.is_empty() && !number.contains('.')) {
            number.push(c);
        } else if !number.is_empty() {
            candidates.push(number.trim_end_matches('.').to_string());
            number.clear();
        }
    }
    candidates
        .iter()
        .filter_map(|n| n.parse::<f64>().ok())
        .find(|v| (1.0..=10.0).contains(v))
}

#[cfg(test)]
mod tests {
    use super::{is_variable_name, parse_score, scrub, without_credentials};

    #[test]
    fn what_the_endpoint_says_is_stored_without_keys() {
        let key = "sk-proj-abcdef123456";
        let said = format!(
            "HTTP 401: Incorrect API key provided: {key}. Also sk-abc***xyz, Authorization: Bearer tok.en-1 and the key {key}"
        );
        let clean = scrub(&said, Some(key));
        assert!(!clean.contains("abcdef"), "{clean}");
        assert!(
            !clean.contains("abc***xyz") && !clean.contains("tok.en-1"),
            "{clean}"
        );
        assert!(
            clean.starts_with("HTTP 401: Incorrect API key provided: [redacted]"),
            "{clean}"
        );
        assert_eq!(scrub("risk-free task-based", None), "risk-free task-based");
        let key_only = scrub("it was hunter2secret", Some("hunter2secret"));
        assert_eq!(key_only, "it was [redacted]");
        assert_eq!(
            without_credentials("https://user:pw@api.example.com/v1?api_key=x"),
            "https://api.example.com/v1"
        );
        assert!(
            is_variable_name("OPENAI_API_KEY")
                && !is_variable_name("sk-abc")
                && !is_variable_name("")
        );
    }

    #[test]
    fn scores_are_read_from_free_text() {
        assert_eq!(parse_score("Score: 7"), Some(7.0));
        assert_eq!(parse_score("I'd say 8.5/10."), Some(8.5));
        assert_eq!(parse_score("0 problems; 6"), Some(6.0));
        assert_eq!(parse_score("no idea"), None);
    }
}
