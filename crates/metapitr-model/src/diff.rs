//! What changed between two states of the metadata, for `metapitr diff`.
//!
//! [`Diff::between`] compares two whole states, so it answers for any two epochs of a
//! timeline (or of two timelines) without reading the log between them. Catalog objects
//! and users are matched by id: an object dropped and created again under the same name
//! has a new id and shows as one dropped and one created. SSTs are matched by `sst_id`
//! (a trivial move to another level keeps its id and is neither added nor removed).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::{
    catalog_kind_name, id_category_name, CatalogObject, GrantPrivilege, State, User, ID_CATEGORIES,
};

/// A catalog object or user, as named in a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Named {
    pub kind: &'static str,
    pub id: u32,
    pub name: String,
}

/// An object present at both ends whose definition differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Altered {
    pub kind: &'static str,
    pub id: u32,
    /// The name at the later end.
    pub name: String,
    /// The name at the earlier end, when it was renamed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_name: Option<String>,
    /// Which fields differ (`name`, `definition`, `owner`, ...).
    pub fields: Vec<&'static str>,
}

/// A privilege granted or revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantChange {
    pub user_id: u32,
    pub user: String,
    pub object_id: u32,
    pub action: &'static str,
    pub with_grant_option: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserChanges {
    pub created: Vec<Named>,
    pub dropped: Vec<Named>,
    pub altered: Vec<Altered>,
    pub grants_added: Vec<GrantChange>,
    pub grants_revoked: Vec<GrantChange>,
}

/// An id generator whose next value moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdMove {
    pub generator: &'static str,
    pub from: u64,
    pub to: u64,
}

/// A system parameter set, changed or removed (`None`: absent at that end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamChange {
    pub name: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// SSTs of the Hummock version added and removed between the two ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SstChanges {
    pub added: u64,
    pub added_bytes: u64,
    pub removed: u64,
    pub removed_bytes: u64,
    /// SSTs in the version at each end.
    pub from_count: u64,
    pub to_count: u64,
    /// Hummock version ids at each end.
    pub from_version: u64,
    pub to_version: u64,
}

/// Everything that differs between the state at `from_epoch` and at `to_epoch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub from_epoch: u64,
    pub to_epoch: u64,
    pub created: Vec<Named>,
    pub dropped: Vec<Named>,
    pub altered: Vec<Altered>,
    pub users: UserChanges,
    pub ids: Vec<IdMove>,
    pub params: Vec<ParamChange>,
    pub ssts: SstChanges,
}

fn named(o: &CatalogObject) -> Named {
    Named {
        kind: catalog_kind_name(o.kind()),
        id: o.id,
        name: o.name.clone(),
    }
}

fn user_named(u: &User) -> Named {
    Named {
        kind: "user",
        id: u.id,
        name: u.name.clone(),
    }
}

/// The names of the fields whose `same` flag is false.
fn differing(fields: &[(bool, &'static str)]) -> Vec<&'static str> {
    fields
        .iter()
        .filter(|(same, _)| !same)
        .map(|(_, name)| *name)
        .collect()
}

fn catalog_fields(a: &CatalogObject, b: &CatalogObject) -> Vec<&'static str> {
    differing(&[
        (a.kind == b.kind, "kind"),
        (a.name == b.name, "name"),
        (a.database_id == b.database_id, "database_id"),
        (a.schema_id == b.schema_id, "schema_id"),
        (a.owner == b.owner, "owner"),
        (a.definition == b.definition, "definition"),
        (a.dependencies == b.dependencies, "dependencies"),
    ])
}

fn user_fields(a: &User, b: &User) -> Vec<&'static str> {
    differing(&[
        (a.name == b.name, "name"),
        (a.is_super == b.is_super, "is_super"),
        (a.can_create_db == b.can_create_db, "can_create_db"),
        (a.can_create_user == b.can_create_user, "can_create_user"),
        (a.can_login == b.can_login, "can_login"),
        (a.auth_info == b.auth_info, "auth_info"),
    ])
}

/// Matches two id-keyed maps: (only in a, only in b, in both and different).
fn match_by_id<'a, T: PartialEq>(
    a: &'a BTreeMap<u32, T>,
    b: &'a BTreeMap<u32, T>,
) -> (Vec<&'a T>, Vec<&'a T>, Vec<(&'a T, &'a T)>) {
    let gone = a.iter().filter(|(id, _)| !b.contains_key(id)).map(|x| x.1);
    let new = b.iter().filter(|(id, _)| !a.contains_key(id)).map(|x| x.1);
    let changed = a
        .iter()
        .filter_map(|(id, x)| b.get(id).filter(|y| *y != x).map(|y| (x, y)));
    (gone.collect(), new.collect(), changed.collect())
}

type GrantKey = (u32, u32, i32);

fn grants(s: &State) -> BTreeMap<GrantKey, (&str, &GrantPrivilege)> {
    s.users
        .values()
        .flat_map(|u| {
            u.grants
                .iter()
                .map(move |g| ((u.id, g.object_id, g.action), (u.name.as_str(), g)))
        })
        .collect()
}

fn grant_change(k: &GrantKey, name: &str, g: &GrantPrivilege) -> GrantChange {
    GrantChange {
        user_id: k.0,
        user: name.to_string(),
        object_id: k.1,
        action: g.action().as_str_name(),
        with_grant_option: g.with_grant_option,
    }
}

impl Diff {
    /// What changed from `a` to `b`.
    pub fn between(a: &State, b: &State) -> Diff {
        let (dropped, created, changed) = match_by_id(&a.catalog, &b.catalog);
        let altered = changed
            .into_iter()
            .map(|(x, y)| Altered {
                kind: catalog_kind_name(y.kind()),
                id: y.id,
                name: y.name.clone(),
                old_name: (x.name != y.name).then(|| x.name.clone()),
                fields: catalog_fields(x, y),
            })
            .collect();

        let (u_dropped, u_created, u_changed) = match_by_id(&a.users, &b.users);
        let u_altered: Vec<Altered> = u_changed
            .into_iter()
            .filter_map(|(x, y)| {
                let fields = user_fields(x, y);
                // A user whose grants alone changed shows under the grant lists.
                (!fields.is_empty()).then(|| Altered {
                    kind: "user",
                    id: y.id,
                    name: y.name.clone(),
                    old_name: (x.name != y.name).then(|| x.name.clone()),
                    fields,
                })
            })
            .collect();
        let (ga, gb) = (grants(a), grants(b));
        let mut grants_added = Vec::new();
        let mut grants_revoked = Vec::new();
        for (k, (name, g)) in &gb {
            // A changed grant option is a revoke of the old grant and a new grant.
            if ga.get(k).is_none_or(|(_, old)| old != g) {
                grants_added.push(grant_change(k, name, g));
            }
        }
        for (k, (name, g)) in &ga {
            if gb.get(k).is_none_or(|(_, new)| new != g) {
                grants_revoked.push(grant_change(k, name, g));
            }
        }

        let ids = ID_CATEGORIES
            .iter()
            .filter_map(|c| {
                let i = *c as usize;
                (a.ids[i] != b.ids[i]).then(|| IdMove {
                    generator: id_category_name(*c),
                    from: a.ids[i],
                    to: b.ids[i],
                })
            })
            .collect();

        let names: BTreeSet<&String> = a.params.keys().chain(b.params.keys()).collect();
        let params = names
            .into_iter()
            .filter(|n| a.params.get(*n) != b.params.get(*n))
            .map(|n| ParamChange {
                name: n.clone(),
                from: a.params.get(n).cloned(),
                to: b.params.get(n).cloned(),
            })
            .collect();

        let sa: BTreeMap<u64, u64> = a
            .hummock
            .ssts()
            .map(|(_, _, s)| (s.sst_id, s.file_size))
            .collect();
        let sb: BTreeMap<u64, u64> = b
            .hummock
            .ssts()
            .map(|(_, _, s)| (s.sst_id, s.file_size))
            .collect();
        let mut ssts = SstChanges {
            from_count: sa.len() as u64,
            to_count: sb.len() as u64,
            from_version: a.hummock.id,
            to_version: b.hummock.id,
            ..Default::default()
        };
        for (id, size) in &sb {
            if !sa.contains_key(id) {
                ssts.added += 1;
                ssts.added_bytes += size;
            }
        }
        for (id, size) in &sa {
            if !sb.contains_key(id) {
                ssts.removed += 1;
                ssts.removed_bytes += size;
            }
        }

        Diff {
            from_epoch: a.epoch,
            to_epoch: b.epoch,
            created: created.into_iter().map(named).collect(),
            dropped: dropped.into_iter().map(named).collect(),
            altered,
            users: UserChanges {
                created: u_created.into_iter().map(user_named).collect(),
                dropped: u_dropped.into_iter().map(user_named).collect(),
                altered: u_altered,
                grants_added,
                grants_revoked,
            },
            ids,
            params,
            ssts,
        }
    }

    /// Whether nothing but the epochs differ.
    pub fn is_empty(&self) -> bool {
        let u = &self.users;
        self.created.is_empty()
            && self.dropped.is_empty()
            && self.altered.is_empty()
            && u.created.is_empty()
            && u.dropped.is_empty()
            && u.altered.is_empty()
            && u.grants_added.is_empty()
            && u.grants_revoked.is_empty()
            && self.ids.is_empty()
            && self.params.is_empty()
            && self.ssts.added == 0
            && self.ssts.removed == 0
    }

    /// The diff as text, one change per line, for `metapitr diff` without `--json`.
    pub fn to_text(&self) -> String {
        use metapitr_core::progress::human_bytes;
        let mut t = String::new();
        let mut line = |s: String| {
            t.push_str(&s);
            t.push('\n');
        };
        let obj = |n: &Named| format!("{} {} (id {})", n.kind, n.name, n.id);
        for n in &self.created {
            line(format!("+ created {}", obj(n)));
        }
        for n in &self.dropped {
            line(format!("- dropped {}", obj(n)));
        }
        let altered = |a: &Altered| {
            let renamed = a
                .old_name
                .as_ref()
                .map(|o| format!(", renamed from {o}"))
                .unwrap_or_default();
            format!(
                "~ altered {} {} (id {}){renamed}: {}",
                a.kind,
                a.name,
                a.id,
                a.fields.join(", ")
            )
        };
        for a in &self.altered {
            line(altered(a));
        }
        let u = &self.users;
        for n in &u.created {
            line(format!("+ created {}", obj(n)));
        }
        for n in &u.dropped {
            line(format!("- dropped {}", obj(n)));
        }
        for a in &u.altered {
            line(altered(a));
        }
        let grant = |g: &GrantChange| {
            format!(
                "{} on object {} to {} (id {}){}",
                g.action,
                g.object_id,
                g.user,
                g.user_id,
                if g.with_grant_option {
                    " with grant option"
                } else {
                    ""
                }
            )
        };
        for g in &u.grants_added {
            line(format!("+ granted {}", grant(g)));
        }
        for g in &u.grants_revoked {
            line(format!("- revoked {}", grant(g)));
        }
        for m in &self.ids {
            line(format!(
                "  id {} {} -> {} (+{})",
                m.generator,
                m.from,
                m.to,
                m.to.saturating_sub(m.from)
            ));
        }
        for p in &self.params {
            let v = |x: &Option<String>| x.clone().unwrap_or_else(|| "(unset)".into());
            line(format!(
                "~ param {}: {} -> {}",
                p.name,
                v(&p.from),
                v(&p.to)
            ));
        }
        let s = &self.ssts;
        line(format!(
            "  ssts: +{} ({}) -{} ({}); {} -> {} SSTs, version {} -> {}",
            s.added,
            human_bytes(s.added_bytes),
            s.removed,
            human_bytes(s.removed_bytes),
            s.from_count,
            s.to_count,
            s.from_version,
            s.to_version
        ));
        t.trim_end().to_string()
    }
}
