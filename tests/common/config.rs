//! The config bodies the tests hand to [`Env::new`](super::rotationd::Env::new), built
//! rather than pasted: a test names the secrets, selectors and dependents its story is
//! about, and the boilerplate (the usual `[policy]`, `strategy = "single-user"`) comes
//! from here.
//!
//! ```ignore
//! let body = Body::new() // [policy] without change tickets, max_age = "93d"
//!     .with(selector("e2e/").dependents(["billing-api"]))
//!     .with(dependent("billing-api"))
//!     .with(secret(&name).schedule("0 3 * * *").window("1h").ticket("CHG-1"))
//!     .render();
//! ```
//!
//! A body that is itself what a test is about (a config error, a line number) stays
//! literal TOML in the test.

/// One TOML table (`[state]`, `[[secret]]` ...): its keys in the order they were set
/// (setting a key again replaces its value), and the tables that belong under it
/// (`[[dependent.metrics]]` under its `[[dependent]]`).
#[derive(Debug, Clone)]
pub struct Table {
    header: String,
    keys: Vec<(String, String)>,
    children: Vec<Table>,
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A TOML array of strings.
fn array<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// A table with this header, e.g. `table("[[group]]")`.
pub fn table(header: &str) -> Table {
    Table {
        header: header.to_string(),
        keys: Vec::new(),
        children: Vec::new(),
    }
}

/// `[[secret]]` `id`, rotated by the single-user strategy (moto's rotations have no
/// function: every strategy behaves alike there).
pub fn secret(id: &str) -> Table {
    table("[[secret]]").set("id", id).strategy("single-user")
}

/// `[[selector]]` on `name_prefix`, single-user.
pub fn selector(name_prefix: &str) -> Table {
    table("[[selector]]")
        .set("name_prefix", name_prefix)
        .strategy("single-user")
}

/// `[[selector]]` on the tag `key` = `value`, single-user.
pub fn tag_selector(key: &str, value: &str) -> Table {
    table("[[selector]]")
        .set("tag_key", key)
        .set("tag_value", value)
        .strategy("single-user")
}

/// `[[dependent]]` `name`.
pub fn dependent(name: &str) -> Table {
    table("[[dependent]]").set("name", name)
}

/// `[[dependent.metrics]]`: `namespace`/`metric_name` over `threshold` is unhealthy.
pub fn dependent_metric(namespace: &str, metric_name: &str, threshold: u32) -> Table {
    table("[[dependent.metrics]]")
        .set("namespace", namespace)
        .set("metric_name", metric_name)
        .raw("threshold", &threshold.to_string())
}

impl Table {
    /// `key = "value"`.
    pub fn set(self, key: &str, value: &str) -> Table {
        self.raw(key, &quote(value))
    }

    /// `key = toml`, the value written as given (a number, a boolean, an inline table).
    pub fn raw(mut self, key: &str, toml: &str) -> Table {
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = toml.to_string(),
            None => self.keys.push((key.to_string(), toml.to_string())),
        }
        self
    }

    /// `key = ["a", "b"]`.
    pub fn list<S: AsRef<str>>(self, key: &str, items: impl IntoIterator<Item = S>) -> Table {
        self.raw(key, &array(items))
    }

    pub fn schedule(self, cron: &str) -> Table {
        self.set("schedule", cron)
    }

    pub fn window(self, window: &str) -> Table {
        self.set("window", window)
    }

    pub fn strategy(self, strategy: &str) -> Table {
        self.set("strategy", strategy)
    }

    /// `change_ticket`: what a scheduled rotation is filed under.
    pub fn ticket(self, ticket: &str) -> Table {
        self.set("change_ticket", ticket)
    }

    pub fn custodians<S: AsRef<str>>(self, users: impl IntoIterator<Item = S>) -> Table {
        self.list("custodians", users)
    }

    pub fn dependents<S: AsRef<str>>(self, names: impl IntoIterator<Item = S>) -> Table {
        self.list("dependents", names)
    }

    /// A table that belongs under this one (a `[[dependent.metrics]]`), written after it.
    pub fn with(mut self, child: Table) -> Table {
        self.children.push(child);
        self
    }

    fn render_into(&self, out: &mut String) {
        out.push('\n');
        out.push_str(&self.header);
        out.push('\n');
        for (k, v) in &self.keys {
            out.push_str(&format!("{k} = {v}\n"));
        }
        for c in &self.children {
            c.render_into(out);
        }
    }

    /// The table as TOML, to append to a config that is already written.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }
}

/// A config body: `[policy]`, then the tables in the order they were added.
#[derive(Debug, Clone)]
pub struct Body {
    policy: Table,
    tables: Vec<Table>,
}

impl Default for Body {
    fn default() -> Body {
        Body::new()
    }
}

impl Body {
    /// `[policy]` with `require_change_ticket = false` (no rotation needs a ticket) and
    /// `max_age = "93d"` (moto's just-rotated secrets are compliant): what most tests run
    /// under.
    pub fn new() -> Body {
        Body {
            policy: table("[policy]")
                .raw("require_change_ticket", "false")
                .set("max_age", "93d"),
            tables: Vec::new(),
        }
    }

    /// Sets `key = "value"` in `[policy]` (e.g. `max_age`, `native_schedule`).
    pub fn policy(mut self, key: &str, value: &str) -> Body {
        self.policy = self.policy.set(key, value);
        self
    }

    /// Leaves `require_change_ticket` at its default (true): scheduled rotations need a
    /// `change_ticket`.
    pub fn change_tickets_required(mut self) -> Body {
        self.policy
            .keys
            .retain(|(k, _)| k != "require_change_ticket");
        self
    }

    /// Adds a table (a secret, a selector, a dependent, any other).
    pub fn with(mut self, t: Table) -> Body {
        self.tables.push(t);
        self
    }

    /// Adds every table of `ts`, in order.
    pub fn with_all(mut self, ts: impl IntoIterator<Item = Table>) -> Body {
        self.tables.extend(ts);
        self
    }

    /// The body as TOML.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.policy.render_into(&mut out);
        for t in &self.tables {
            t.render_into(&mut out);
        }
        out
    }
}
