use cronhook_core::{RunId, ScheduleId, Timestamp};
use cronhook_proto::v1 as pb;
use cronhook_proto::v1::run_service_server::RunService;
use cronhook_store::RunFilter;
use tonic::{Request, Response, Status};

use crate::ApiState;
use crate::convert::{self, run_to_proto};
use crate::error::{ApiError, ApiResult};

pub(crate) struct Runs {
    st: ApiState,
}

impl Runs {
    pub(crate) fn new(st: ApiState) -> Self {
        Self { st }
    }
}

/// Page tokens of ListRuns: `<nominal ms>.<run id>` of the last run returned.
fn encode_token(t: Timestamp, id: RunId) -> String {
    format!("{}.{id}", t.as_millis())
}

fn decode_token(s: &str) -> ApiResult<(Timestamp, RunId)> {
    let bad = || ApiError::invalid("page_token", "is not a token returned by this API");
    let (t, id) = s.split_once('.').ok_or_else(bad)?;
    let t: i64 = t.parse().map_err(|_| bad())?;
    let id: RunId = id.parse().map_err(|_| bad())?;
    Ok((Timestamp::from_millis(t), id))
}

#[tonic::async_trait]
impl RunService for Runs {
    async fn list_runs(&self, req: Request<pb::ListRunsRequest>) -> Result<Response<pb::ListRunsResponse>, Status> {
        let req = req.into_inner();
        let schedule_id = if req.schedule_id.is_empty() {
            None
        } else {
            Some(ScheduleId::parse(&req.schedule_id, "schedule_id").map_err(ApiError::from)?)
        };
        let statuses = req
            .statuses
            .iter()
            .enumerate()
            .map(|(i, s)| convert::run_status(*s, &format!("statuses[{i}]")))
            .collect::<ApiResult<Vec<_>>>()?;
        let size = if req.page_size == 0 { 50 } else { req.page_size.min(1000) };
        let filter = RunFilter {
            schedule_id,
            statuses,
            from: convert::instant(req.start_time.as_ref()),
            to: convert::instant(req.end_time.as_ref()),
            before: if req.page_token.is_empty() { None } else { Some(decode_token(&req.page_token)?) },
            limit: size + 1,
        };
        let mut runs = self.st.stores.runs.list_runs(&self.st.project, &filter).await.map_err(ApiError::from)?;
        let more = runs.len() > size as usize;
        runs.truncate(size as usize);
        let next_page_token = match (more, runs.last()) {
            (true, Some(r)) => encode_token(r.nominal_time, r.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListRunsResponse {
            runs: runs.iter().map(|r| run_to_proto(r, &[])).collect(),
            next_page_token,
        }))
    }

    async fn get_run(&self, req: Request<pb::GetRunRequest>) -> Result<Response<pb::Run>, Status> {
        let id = RunId::parse(&req.into_inner().id, "id").map_err(ApiError::from)?;
        let (run, attempts) = self.st.stores.runs.get_run(&self.st.project, id).await.map_err(ApiError::from)?;
        Ok(Response::new(run_to_proto(&run, &attempts)))
    }
}
