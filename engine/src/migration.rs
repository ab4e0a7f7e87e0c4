//! Moving running instances to another version of their definition:
//! `duban migrate plan` and `duban migrate apply` (docs/migration.md).
//!
//! The core computes, per instance, the [`Plan`] and the transition that
//! carries it out ([`runtime::migrate`]); this module picks the instances,
//! and commits. [`Engine::migration_apply`] first plans every instance and
//! writes nothing when any is refused; then it migrates them one
//! transaction each — an instance moves wholly or not at all — planning
//! each again on the state it has at that moment, with the revision check
//! of every commit (a task completed between the plan and the apply is
//! judged afresh, never overwritten).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::definition::Definition;
use crate::runtime::facts::Facts;
use crate::runtime::migrate::{migrate, Migration, Plan};
use crate::runtime::reports::Reports;
use crate::runtime::{Env, InstanceState, NoProcesses, Transition};
use crate::service::{Engine, ServiceError, Values, APPLY_ATTEMPTS};
use crate::store::{Store, StoreError};

/// Which instances a plan is about, and what is asked of it.
#[derive(Clone, Debug)]
pub struct MigrationRequest {
    /// The process.
    pub process: String,
    /// The version its instances run on.
    pub from: u32,
    /// The version they are to run on.
    pub to: u32,
    /// Step ids that changed, old → new (`--map`).
    pub map: Vec<(String, String)>,
    /// Count deadlines again under the target (`--recount`).
    pub recount: bool,
    /// Values for variables the target requires (`--var`, or JSON from a
    /// scenario), typed by the target version.
    pub variables: Values,
    /// Only these instances (`--instances`); every running or stuck
    /// instance on `from` when `None`.
    pub instances: Option<Vec<String>>,
}

/// The message of a refused plan: every refused instance with its reasons.
pub fn refused_message(plans: &[Plan]) -> String {
    let refused: Vec<&Plan> = plans.iter().filter(|p| !p.ok()).collect();
    let mut out = format!(
        "the migration is refused for {} of {} instance(s); nothing was migrated",
        refused.len(),
        plans.len()
    );
    for p in refused {
        for r in &p.refusals {
            out.push_str(&format!("\n  instance {}: {r}", p.instance));
        }
    }
    out
}

/// What [`Engine::migration_apply`] did.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The plans, as carried out.
    pub plans: Vec<Plan>,
    /// The transitions committed, one per instance.
    pub transitions: Vec<Transition>,
}

impl<S: Store> Engine<S> {
    /// The plan for every instance the request names: what would change,
    /// and why an instance would be refused. Writes nothing.
    pub async fn migration_plan(
        &self,
        req: &MigrationRequest,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Plan>, ServiceError> {
        let parts = self.migration_parts(req).await?;
        self.plan_with(req, &parts, actor, now).await
    }

    async fn plan_with(
        &self,
        req: &MigrationRequest,
        (from, to, m): &Parts,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Plan>, ServiceError> {
        let mut plans = vec![];
        for id in self.migration_instances(req).await? {
            let Some(state) = self.store().load(&id).await? else {
                plans.push(missing(req, &id));
                continue;
            };
            plans.push(self.migrate_one(from, to, &state, m, actor, now).0);
        }
        Ok(plans)
    }

    /// Carries out the plan: refused as a whole (nothing written) when any
    /// instance is refused; else each instance in its own transaction.
    pub async fn migration_apply(
        &self,
        req: &MigrationRequest,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Applied, ServiceError> {
        let parts = self.migration_parts(req).await?;
        let plans = self.plan_with(req, &parts, actor, now).await?;
        if plans.iter().any(|p| !p.ok()) {
            return Err(ServiceError::MigrationRefused(plans));
        }
        let (from, to, m) = &parts;
        let mut done = Applied {
            plans: vec![],
            transitions: vec![],
        };
        for p in &plans {
            let mut attempts = 0;
            loop {
                attempts += 1;
                let state = self
                    .store()
                    .load(&p.instance)
                    .await?
                    .ok_or_else(|| ServiceError::UnknownInstance(p.instance.clone()))?;
                let (plan, t) = self.migrate_one(from, to, &state, m, actor, now);
                let Some(t) = t else {
                    // Changed since it was planned (a task completed onto a
                    // step the target lacks): those before it stay migrated,
                    // it and those after it are not.
                    let mut rest = vec![plan];
                    rest.extend(
                        plans
                            .iter()
                            .skip_while(|q| q.instance != p.instance)
                            .skip(1)
                            .cloned(),
                    );
                    tracing::warn!(
                        migrated = done.transitions.len(),
                        "a migration stopped: an instance changed since it was planned"
                    );
                    return Err(ServiceError::MigrationRefused(rest));
                };
                match self.commit(Some(state.revision), &t, now).await {
                    Ok(()) => {
                        self.settle(&t, now).await;
                        done.plans.push(plan);
                        done.transitions.push(t);
                        break;
                    }
                    Err(StoreError::Conflict(_)) if attempts < APPLY_ATTEMPTS => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(done)
    }

    fn migrate_one(
        &self,
        from: &Definition,
        to: &Definition,
        state: &InstanceState,
        m: &Migration,
        actor: &str,
        now: DateTime<Utc>,
    ) -> (Plan, Option<Transition>) {
        let world = self.world();
        let facts = Facts::none();
        let reports = Reports::default();
        let env = Env {
            definition: to,
            calendar: &world.calendar,
            directory: world.directory.as_ref(),
            processes: &NoProcesses,
            call_depth: state.depth,
            facts: &facts,
            reports: &reports,
        };
        migrate(&env, from, state, m, actor, now)
    }

    /// The two versions and the migration a request asks for, read and
    /// typed once per request.
    async fn migration_parts(&self, req: &MigrationRequest) -> Result<Parts, ServiceError> {
        let version = |v: u32| async move {
            match self.definition(&req.process, Some(v)).await {
                Err(ServiceError::UnknownProcess(_)) => Err(ServiceError::Io(format!(
                    "process `{}` has no deployed version {v} (`duban definitions` lists them)",
                    req.process
                ))),
                other => other,
            }
        };
        let from = version(req.from).await?;
        let to = version(req.to).await?;
        let variables = self.typed(&to, req.variables.clone())?;
        let m = Migration {
            map: req.map.iter().cloned().collect(),
            recount: req.recount,
            variables,
        };
        Ok((from, to, m))
    }

    async fn migration_instances(
        &self,
        req: &MigrationRequest,
    ) -> Result<Vec<String>, ServiceError> {
        if let Some(ids) = &req.instances {
            return Ok(ids.clone());
        }
        let mut ids = vec![];
        for status in ["running", "stuck"] {
            for r in self
                .store()
                .instances(Some(status), Some(&req.process))
                .await?
            {
                if r.version == req.from {
                    ids.push(r.id);
                }
            }
        }
        ids.sort_by_key(|id| (id.len(), id.clone()));
        Ok(ids)
    }
}

/// The version instances run on, the target, and what is asked.
type Parts = (Arc<Definition>, Arc<Definition>, Migration);

fn missing(req: &MigrationRequest, id: &str) -> Plan {
    Plan {
        instance: id.into(),
        process: req.process.clone(),
        from: req.from,
        to: req.to,
        steps: vec![],
        tasks: vec![],
        timers: vec![],
        variables: vec![],
        children: vec![],
        refusals: vec![format!("no instance `{id}`")],
    }
}
