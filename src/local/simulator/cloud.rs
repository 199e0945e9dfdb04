//! The simulator as an in-process [`PanelCloud`] (benchmarks), the same contract the HTTP
//! routes serve.

use super::*;

#[async_trait]
impl PanelCloud for Simulator {
    async fn panels(&self, account: &str, _: Deadline) -> Result<Vec<Panel>, PanelError> {
        Ok(self.list(account))
    }

    async fn panel(&self, account: &str, panel: &str, _: Deadline) -> Result<Panel, PanelError> {
        self.get(account, panel)
    }

    async fn arm(
        &self,
        account: &str,
        panel: &str,
        request: &ArmRequest,
        _: Deadline,
    ) -> Result<ArmOutcome, PanelError> {
        Simulator::arm(self, account, panel, request)
    }

    async fn disarm(
        &self,
        account: &str,
        panel: &str,
        request: &DisarmRequest,
        _: Deadline,
    ) -> Result<Panel, PanelError> {
        Simulator::disarm(self, account, panel, request)
    }

    async fn signal(
        &self,
        account: &str,
        panel: &str,
        request: &SignalRequest,
        _: Deadline,
    ) -> Result<(), PanelError> {
        Simulator::signal(self, account, panel, request)
    }

    async fn notify(&self, account: &str, notice: &Notice, _: Deadline) -> Result<(), PanelError> {
        Simulator::notify(self, account, notice);
        Ok(())
    }

    async fn users(&self, account: &str, _: Deadline) -> Result<UserList, PanelError> {
        Ok(Simulator::users(self, account))
    }
}
