use cronhook_core::{
    Schedule, ScheduleId, ScheduleState, SigningSecret, Tick, TickId, Timestamp, TriggerKind, validate,
};
use cronhook_cron::CompiledSpec;
use cronhook_delivery::seal::is_sealed;
use cronhook_delivery::signing;
use cronhook_proto::timestamp;
use cronhook_proto::v1 as pb;
use cronhook_proto::v1::schedule_service_server::ScheduleService;
use cronhook_store::NextFire;
use tonic::{Request, Response, Status};

use crate::ApiState;
use crate::convert::{self, restore_redacted, schedule_to_proto};
use crate::error::{ApiError, ApiResult};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;
const CAS_RETRIES: usize = 5;

pub(crate) struct Schedules {
    st: ApiState,
}

impl Schedules {
    pub(crate) fn new(st: ApiState) -> Self {
        Self { st }
    }

    /// Seals the values of headers marked secret (already sealed ones are kept).
    fn seal_headers(&self, def: &mut cronhook_core::NewSchedule) -> ApiResult<()> {
        for (i, h) in def.target.headers.iter_mut().enumerate() {
            if h.secret && !is_sealed(&h.value) {
                let key = self.st.seal.as_ref().ok_or_else(|| {
                    ApiError::precondition(format!(
                        "schedule.target.headers[{i}]: secret values need secrets.key configured on the API"
                    ))
                })?;
                h.value = key.seal(&h.value);
            }
        }
        Ok(())
    }

    /// Returns a new signing secret in clear (shown once) and sealed (stored).
    fn new_secret(&self, now: Timestamp, field: &str) -> ApiResult<(String, SigningSecret)> {
        let key = self.st.seal.as_ref().ok_or_else(|| {
            ApiError::precondition(format!("{field}: signing needs secrets.key configured on the API"))
        })?;
        let plain = signing::generate_secret();
        let sealed = SigningSecret {
            id: format!("ss_{}", uuid::Uuid::new_v4().simple()),
            sealed: key.seal(&plain),
            created_at: now,
            expires_at: None,
        };
        Ok((plain, sealed))
    }

    /// Refuses targets the SSRF guard would refuse anyway (internal names, blocked literals).
    fn check_destinations(&self, def: &cronhook_core::NewSchedule) -> ApiResult<()> {
        cronhook_delivery::ssrf::check_target(&def.target.url, &self.st.ssrf)
            .map_err(|r| ApiError::invalid("schedule.target.url", r))?;
        if let Some(u) = &def.failure_notification_url {
            cronhook_delivery::ssrf::check_target(u, &self.st.ssrf)
                .map_err(|r| ApiError::invalid("schedule.failure_notification_url", r))?;
        }
        Ok(())
    }

    /// Compiles the spec of schedule `id` (its id seeds hashed `H` fields).
    fn compile(spec: &cronhook_core::ScheduleSpec, id: ScheduleId) -> ApiResult<CompiledSpec> {
        CompiledSpec::compile_seeded(spec, id.seed()).map_err(|e| e.within("schedule").into())
    }

    async fn get(&self, id: &str) -> ApiResult<Schedule> {
        let id = ScheduleId::parse(id, "id")?;
        Ok(self.st.stores.schedules.get_schedule(&self.st.project, id).await?)
    }

    /// Read-modify-write with optimistic concurrency, retried on conflicts (for calls such
    /// as pause that take no etag).
    async fn modify(
        &self,
        id: &str,
        f: impl Fn(&mut Schedule, Timestamp) -> ApiResult<Option<NextFire>>,
    ) -> ApiResult<Schedule> {
        for _ in 0..CAS_RETRIES {
            let mut s = self.get(id).await?;
            let expected = s.version;
            let now = self.st.stores.ticks.now().await?;
            let Some(next) = f(&mut s, now)? else { return Ok(s) };
            s.updated_at = now;
            match self.st.stores.schedules.update_schedule(&s, expected, next).await {
                Err(cronhook_store::Error::Conflict(_)) => continue,
                r => return Ok(r?),
            }
        }
        Err(cronhook_store::Error::Conflict(format!("schedule {id} keeps changing; retry")).into())
    }
}

fn parse_etag(etag: &str, field: &str) -> ApiResult<i64> {
    etag.trim().parse().map_err(|_| ApiError::invalid(field, "is not an etag returned by this API"))
}

fn page_size(n: u32) -> u32 {
    if n == 0 { DEFAULT_PAGE } else { n.min(MAX_PAGE) }
}

#[tonic::async_trait]
impl ScheduleService for Schedules {
    async fn create_schedule(
        &self,
        req: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::CreateScheduleResponse>, Status> {
        let req = req.into_inner();
        let p = req.schedule.as_ref().ok_or_else(|| ApiError::invalid("schedule", "is required"))?;
        let mut def = convert::new_schedule(p, self.st.default_catchup_ms)?;
        validate::schedule(&def, &self.st.limits).map_err(ApiError::from)?;
        self.check_destinations(&def)?;
        self.seal_headers(&mut def)?;
        let now_for_secret = self.st.stores.ticks.now().await.map_err(ApiError::from)?;
        let secret = if req.generate_signing_secret {
            let (plain, sealed) = self.new_secret(now_for_secret, "generate_signing_secret")?;
            def.signing_secrets.push(sealed);
            plain
        } else {
            String::new()
        };
        let id = ScheduleId::generate();
        let spec = Self::compile(&def.spec, id)?;
        let now = self.st.stores.ticks.now().await.map_err(ApiError::from)?;
        let next = spec.next_after(now).ok_or_else(|| {
            ApiError::invalid("schedule.spec", "has no fire time after now (a past one-shot, or end_time passed)")
        })?;
        let s = Schedule {
            id,
            project_id: self.st.project.clone(),
            runs_left: def.spec.remaining_runs,
            def,
            state: ScheduleState::Active,
            state_reason: String::new(),
            next_fire_at: Some(next),
            version: 1,
            shard: id.shard(self.st.shard_count),
            created_at: now,
            updated_at: now,
        };
        self.st.stores.schedules.insert_schedule(&s).await.map_err(ApiError::from)?;
        tracing::info!(schedule_id = %s.id, name = %s.def.name, "schedule created");
        let mut times = vec![next];
        times.extend(spec.preview(next, 4));
        Ok(Response::new(pb::CreateScheduleResponse {
            schedule: Some(schedule_to_proto(&s)),
            next_fire_times: times.into_iter().map(timestamp).collect(),
            signing_secret: secret,
        }))
    }

    async fn get_schedule(&self, req: Request<pb::GetScheduleRequest>) -> Result<Response<pb::Schedule>, Status> {
        let s = self.get(&req.into_inner().id).await?;
        Ok(Response::new(schedule_to_proto(&s)))
    }

    async fn list_schedules(
        &self,
        req: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let req = req.into_inner();
        let state = convert::state_filter(req.state)?;
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(
                ScheduleId::parse(&req.page_token, "page_token")
                    .map_err(|_| ApiError::invalid("page_token", "is not a token returned by this API"))?,
            )
        };
        let size = page_size(req.page_size);
        let mut list = self
            .st
            .stores
            .schedules
            .list_schedules(&self.st.project, state, after, size + 1)
            .await
            .map_err(ApiError::from)?;
        let more = list.len() > size as usize;
        list.truncate(size as usize);
        let next_page_token = match (more, list.last()) {
            (true, Some(last)) => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: list.iter().map(schedule_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_schedule(&self, req: Request<pb::UpdateScheduleRequest>) -> Result<Response<pb::Schedule>, Status> {
        let req = req.into_inner();
        let p = req.schedule.as_ref().ok_or_else(|| ApiError::invalid("schedule", "is required"))?;
        if req.etag.trim().is_empty() {
            return Err(ApiError::invalid("etag", "is required (from the last read of the schedule)").into());
        }
        let expected = parse_etag(&req.etag, "etag")?;
        let current = self.get(&p.id).await?;
        let mut def = convert::new_schedule(p, self.st.default_catchup_ms)?;
        restore_redacted(&mut def, &current.def);
        validate::schedule(&def, &self.st.limits).map_err(ApiError::from)?;
        self.check_destinations(&def)?;
        self.seal_headers(&mut def)?;
        def.signing_secrets = current.def.signing_secrets.clone();
        let spec = Self::compile(&def.spec, current.id)?;
        let now = self.st.stores.ticks.now().await.map_err(ApiError::from)?;
        let mut s = current.clone();
        let spec_changed = def.spec != current.def.spec;
        let next = if spec_changed {
            let next = spec.next_after(now);
            s.runs_left = def.spec.remaining_runs;
            if current.state == ScheduleState::Completed && next.is_some() {
                s.state = ScheduleState::Active;
                s.state_reason.clear();
            }
            NextFire::Set(next)
        } else {
            NextFire::Keep
        };
        s.def = def;
        s.updated_at = now;
        let updated = self.st.stores.schedules.update_schedule(&s, expected, next).await.map_err(ApiError::from)?;
        Ok(Response::new(schedule_to_proto(&updated)))
    }

    async fn delete_schedule(
        &self,
        req: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        let req = req.into_inner();
        let id = ScheduleId::parse(&req.id, "id").map_err(ApiError::from)?;
        let etag = if req.etag.trim().is_empty() { None } else { Some(parse_etag(&req.etag, "etag")?) };
        self.st.stores.schedules.delete_schedule(&self.st.project, id, etag).await.map_err(ApiError::from)?;
        tracing::info!(schedule_id = %id, "schedule deleted");
        Ok(Response::new(pb::DeleteScheduleResponse {}))
    }

    async fn pause_schedule(&self, req: Request<pb::PauseScheduleRequest>) -> Result<Response<pb::Schedule>, Status> {
        let req = req.into_inner();
        let reason = req.reason.trim().to_owned();
        let s = self
            .modify(&req.id, |s, _| match s.state {
                ScheduleState::Paused => Ok(None),
                ScheduleState::Completed => {
                    Err(ApiError::precondition("the schedule is completed; update its spec instead"))
                }
                ScheduleState::Active => {
                    s.state = ScheduleState::Paused;
                    s.state_reason = if reason.is_empty() { "paused by API".to_owned() } else { reason.clone() };
                    Ok(Some(NextFire::Keep))
                }
            })
            .await?;
        Ok(Response::new(schedule_to_proto(&s)))
    }

    async fn resume_schedule(&self, req: Request<pb::ResumeScheduleRequest>) -> Result<Response<pb::Schedule>, Status> {
        let req = req.into_inner();
        let s = self
            .modify(&req.id, |s, now| match s.state {
                ScheduleState::Active => Ok(None),
                ScheduleState::Completed => {
                    Err(ApiError::precondition("the schedule is completed; update its spec instead"))
                }
                ScheduleState::Paused => {
                    // Resume continues from now: the ticks skipped while paused do not burst.
                    let spec = Self::compile(&s.def.spec, s.id)?;
                    s.state = ScheduleState::Active;
                    s.state_reason.clear();
                    Ok(Some(NextFire::Set(spec.next_after(now))))
                }
            })
            .await?;
        Ok(Response::new(schedule_to_proto(&s)))
    }

    async fn trigger_schedule(
        &self,
        req: Request<pb::TriggerScheduleRequest>,
    ) -> Result<Response<pb::TriggerScheduleResponse>, Status> {
        let s = self.get(&req.into_inner().id).await?;
        let now = self.st.stores.ticks.now().await.map_err(ApiError::from)?;
        let tick = Tick {
            id: TickId::manual(s.id, uuid::Uuid::new_v4()),
            project_id: s.project_id.clone(),
            schedule_id: s.id,
            schedule_version: s.version,
            nominal_time: now,
            fire_time: now,
            trigger: TriggerKind::Manual,
            target: s.def.target.clone(),
            retry: s.def.retry.clone(),
            shard: s.shard,
            epoch: 0,
            signing_secrets: Vec::new(),
            failure_notification_url: None,
            auto_pause_after_failures: 0,
            overlap: Default::default(),
        };
        // Into the outbox: the shard's planner publishes it on its next pass.
        self.st.stores.ticks.insert_tick(&tick).await.map_err(ApiError::from)?;
        tracing::info!(schedule_id = %s.id, tick_id = %tick.id, "manual trigger");
        Ok(Response::new(pb::TriggerScheduleResponse { tick_id: tick.id.to_string(), fire_time: Some(timestamp(now)) }))
    }

    async fn backfill_schedule(
        &self,
        req: Request<pb::BackfillScheduleRequest>,
    ) -> Result<Response<pb::BackfillScheduleResponse>, Status> {
        const MAX: usize = 10_000;
        let req = req.into_inner();
        let s = self.get(&req.id).await?;
        let start =
            convert::instant(req.start_time.as_ref()).ok_or_else(|| ApiError::invalid("start_time", "is required"))?;
        let end =
            convert::instant(req.end_time.as_ref()).ok_or_else(|| ApiError::invalid("end_time", "is required"))?;
        let now = self.st.stores.ticks.now().await.map_err(ApiError::from)?;
        if end <= start {
            return Err(ApiError::invalid("end_time", "must be after start_time").into());
        }
        if end > now {
            return Err(ApiError::invalid("end_time", "must not be in the future (backfill fills the past)").into());
        }
        let overlap = match pb::OverlapPolicy::try_from(req.overlap_policy) {
            Ok(pb::OverlapPolicy::Unspecified | pb::OverlapPolicy::Allow) => cronhook_core::OverlapPolicy::Allow,
            Ok(pb::OverlapPolicy::Skip) => cronhook_core::OverlapPolicy::Skip,
            Ok(pb::OverlapPolicy::BufferOne) => cronhook_core::OverlapPolicy::BufferOne,
            Ok(pb::OverlapPolicy::CancelPrevious) => cronhook_core::OverlapPolicy::CancelPrevious,
            Err(_) => {
                return Err(ApiError::invalid("overlap_policy", format!("unknown value {}", req.overlap_policy)).into());
            }
        };
        let spec = Self::compile(&s.def.spec, s.id)?;
        let times = spec.fire_times(start, end, MAX + 1);
        if times.len() > MAX {
            return Err(ApiError::invalid("start_time", format!("the range holds more than {MAX} fire times")).into());
        }
        let ticks: Vec<Tick> = times
            .into_iter()
            .map(|t| Tick {
                id: TickId::scheduled(s.id, t),
                project_id: s.project_id.clone(),
                schedule_id: s.id,
                schedule_version: s.version,
                nominal_time: t,
                fire_time: now,
                trigger: TriggerKind::Backfill,
                target: s.def.target.clone(),
                retry: s.def.retry.clone(),
                shard: s.shard,
                epoch: 0,
                signing_secrets: Vec::new(),
                failure_notification_url: None,
                auto_pause_after_failures: 0,
                overlap,
            })
            .collect();
        let created = self.st.stores.ticks.insert_backfill(&ticks).await.map_err(ApiError::from)?;
        let existing = ticks.len() as u32 - created;
        tracing::info!(schedule_id = %s.id, created, existing, "backfill");
        Ok(Response::new(pb::BackfillScheduleResponse { created, existing }))
    }

    async fn rotate_signing_secret(
        &self,
        req: Request<pb::RotateSigningSecretRequest>,
    ) -> Result<Response<pb::RotateSigningSecretResponse>, Status> {
        let req = req.into_inner();
        let overlap_ms = match req.overlap.as_ref() {
            None => 24 * 3600 * 1000,
            Some(d) => cronhook_proto::to_duration_ms(d)
                .filter(|ms| *ms <= 30 * 24 * 3600 * 1000)
                .ok_or_else(|| ApiError::invalid("overlap", "must be between 0 and 30 days"))?,
        };
        let created = std::sync::Mutex::new(String::new());
        let s = self
            .modify(&req.id, |s, now| {
                let (plain, fresh) = self.new_secret(now, "id")?;
                // Expired secrets go; current ones stay valid for the overlap.
                s.def.signing_secrets.retain(|x| x.expires_at.is_none_or(|e| e > now));
                for x in s.def.signing_secrets.iter_mut().filter(|x| x.expires_at.is_none()) {
                    x.expires_at = Some(now.add_millis(overlap_ms));
                }
                s.def.signing_secrets.push(fresh);
                if let Ok(mut c) = created.lock() {
                    *c = plain;
                }
                Ok(Some(NextFire::Keep))
            })
            .await?;
        tracing::info!(schedule_id = %s.id, "signing secret rotated");
        let signing_secret = created.into_inner().unwrap_or_default();
        Ok(Response::new(pb::RotateSigningSecretResponse { schedule: Some(schedule_to_proto(&s)), signing_secret }))
    }

    async fn preview_schedule(
        &self,
        req: Request<pb::PreviewScheduleRequest>,
    ) -> Result<Response<pb::PreviewScheduleResponse>, Status> {
        let req = req.into_inner();
        let spec = convert::spec(req.spec.as_ref(), "spec")?;
        let compiled = CompiledSpec::compile(&spec).map_err(ApiError::from)?;
        let count = match req.count {
            0 => 5,
            n if n > 100 => return Err(ApiError::invalid("count", "must be at most 100").into()),
            n => n,
        };
        let after = match convert::instant(req.after.as_ref()) {
            Some(t) => t,
            None => self.st.stores.ticks.now().await.map_err(ApiError::from)?,
        };
        let times = compiled.preview(after, count as usize);
        Ok(Response::new(pb::PreviewScheduleResponse {
            fire_times: times
                .into_iter()
                .map(|t| pb::FireTime {
                    time: Some(timestamp(t)),
                    local_time: compiled.local_time(t),
                    dst_note: compiled.dst_note(t).unwrap_or_default(),
                })
                .collect(),
        }))
    }
}
