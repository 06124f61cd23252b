//! `metapitr config show`: every setting's effective value and where it came from.

use serde_json::json;

use crate::cli::args::ConfigCmd;
use crate::cli::common::{out, Ctx};
use crate::config::{Settings, Shown};
use crate::error::Result;

pub(crate) fn run(cmd: ConfigCmd, ctx: &Ctx) -> Result<()> {
    let ConfigCmd::Show { repo, etcd, json } = cmd;
    let mut flags = repo.flags();
    flags.extend(etcd.flags());
    let settings = ctx.settings(&flags)?;
    let shown = settings.show()?;
    if json {
        return print_json(&settings, &shown);
    }
    let mut t = format!(
        "settings file: {}\n",
        settings
            .file()
            .map_or("none".to_string(), |p| p.display().to_string())
    );
    let width = shown.iter().map(|x| x.setting.key.len()).max().unwrap_or(0);
    for x in &shown {
        t.push_str(&format!(
            "{:width$}  {}{}\n",
            x.setting.key,
            x.value.as_deref().unwrap_or("(unset)"),
            x.source.map(|x| format!("  [{x}]")).unwrap_or_default()
        ));
    }
    out(t.trim_end())
}

/// `--json`: the settings file and every setting with its flag, variables and default.
fn print_json(settings: &Settings, shown: &[Shown<'_>]) -> Result<()> {
    let v: Vec<serde_json::Value> = shown
        .iter()
        .map(|x| {
            let s = x.setting;
            json!({
                "key": s.key,
                "value": x.value,
                "source": x.source.map(|x| x.to_string()),
                "secret": s.secret,
                "flag": s.flag,
                "env": s.env,
                "fallback_env": s.fallback_env,
                "default": x.default,
                "help": s.help,
            })
        })
        .collect();
    out(json!({
        "file": settings.file().map(|p| p.display().to_string()),
        "settings": v,
    })
    .to_string())
}
