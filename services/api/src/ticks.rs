use cronhook_core::{ScheduleId, TickId, TickState, Timestamp};
use cronhook_proto::timestamp;
use cronhook_proto::v1 as pb;
use cronhook_proto::v1::tick_service_server::TickService;
use cronhook_store::TickFilter;
use tonic::{Request, Response, Status};

use crate::ApiState;
use crate::convert;
use crate::error::{ApiError, ApiResult};

pub(crate) struct Ticks {
    st: ApiState,
}

impl Ticks {
    pub(crate) fn new(st: ApiState) -> Self {
        Self { st }
    }
}

fn outcome(v: i32, field: &str) -> ApiResult<TickState> {
    Ok(match pb::TickOutcome::try_from(v) {
        Ok(pb::TickOutcome::Planned) => TickState::Planned,
        Ok(pb::TickOutcome::Published) => TickState::Published,
        Ok(pb::TickOutcome::Delivered) => TickState::Delivered,
        Ok(pb::TickOutcome::Failed) => TickState::Failed,
        Ok(pb::TickOutcome::Skipped) => TickState::Skipped,
        Ok(pb::TickOutcome::Missed) => TickState::Missed,
        Ok(pb::TickOutcome::Cancelled) => TickState::Cancelled,
        Ok(pb::TickOutcome::Buffered) => TickState::Buffered,
        _ => return Err(ApiError::invalid(field, format!("unknown tick outcome {v}"))),
    })
}

fn outcome_to_proto(s: TickState) -> pb::TickOutcome {
    match s {
        TickState::Planned => pb::TickOutcome::Planned,
        TickState::Published => pb::TickOutcome::Published,
        TickState::Delivered => pb::TickOutcome::Delivered,
        TickState::Failed => pb::TickOutcome::Failed,
        TickState::Skipped => pb::TickOutcome::Skipped,
        TickState::Missed => pb::TickOutcome::Missed,
        TickState::Cancelled => pb::TickOutcome::Cancelled,
        TickState::Buffered => pb::TickOutcome::Buffered,
    }
}

#[tonic::async_trait]
impl TickService for Ticks {
    async fn list_ticks(&self, req: Request<pb::ListTicksRequest>) -> Result<Response<pb::ListTicksResponse>, Status> {
        let req = req.into_inner();
        let schedule_id = if req.schedule_id.is_empty() {
            None
        } else {
            Some(ScheduleId::parse(&req.schedule_id, "schedule_id").map_err(ApiError::from)?)
        };
        let states = req
            .outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| outcome(*o, &format!("outcomes[{i}]")))
            .collect::<ApiResult<Vec<_>>>()?;
        let size = if req.page_size == 0 { 50 } else { req.page_size.min(1000) };
        let before = if req.page_token.is_empty() {
            None
        } else {
            let bad = || ApiError::invalid("page_token", "is not a token returned by this API");
            let (t, id) = req.page_token.split_once('.').ok_or_else(bad)?;
            let t: i64 = t.parse().map_err(|_| bad())?;
            let id: TickId = id.parse().map_err(|_| bad())?;
            Some((Timestamp::from_millis(t), id))
        };
        let filter = TickFilter {
            schedule_id,
            states,
            from: convert::instant(req.start_time.as_ref()),
            to: convert::instant(req.end_time.as_ref()),
            before,
            limit: size + 1,
        };
        let mut rows = self.st.stores.ticks.list_ticks(&self.st.project, &filter).await.map_err(ApiError::from)?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(r)) => format!("{}.{}", r.nominal_time.as_millis(), r.id),
            _ => String::new(),
        };
        let ticks = rows
            .into_iter()
            .map(|r| pb::LedgerTick {
                id: r.id.to_string(),
                schedule_id: r.schedule_id.to_string(),
                nominal_time: Some(timestamp(r.nominal_time)),
                fire_time: Some(timestamp(r.fire_time)),
                outcome: outcome_to_proto(r.state) as i32,
                reason: r.reason.unwrap_or_default(),
                trigger: convert::trigger_to_proto(r.trigger) as i32,
                create_time: Some(timestamp(r.created_at)),
                update_time: Some(timestamp(r.updated_at)),
            })
            .collect();
        Ok(Response::new(pb::ListTicksResponse { ticks, next_page_token }))
    }
}
