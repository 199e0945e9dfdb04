//! Per-account items: the Alexa grants (sealed Login-with-Amazon tokens, one per region and
//! user) and the Google link state.

use super::*;

impl DynamoStore {
    pub(super) async fn put_grant(
        &self,
        account: &str,
        region: &str,
        grant: &StoredGrant,
    ) -> Result<(), StoreError> {
        let mut item = key(grant_pk(account), region);
        item.insert("access_token".into(), s(&grant.access_token));
        item.insert("refresh_token".into(), s(&grant.refresh_token));
        // Not `expires_at`: that is the table's TTL attribute, and DynamoDB would delete the
        // grant (refresh token included) when its access token expires.
        item.insert("token_expires_at".into(), s(timestamp(grant.expires_at)));
        self.put(item).await
    }

    pub(super) async fn grants(
        &self,
        account: &str,
    ) -> Result<Vec<(String, StoredGrant)>, StoreError> {
        let request = self
            .query_partition(grant_pk(account))
            .key_condition_expression("#pk = :pk");
        // Sort keys are the regions, so the Query returns them in region order.
        self.query_all(request, None)
            .await?
            .iter()
            .map(|item| {
                Ok((
                    get_s(item, SK)?.to_string(),
                    StoredGrant {
                        access_token: get_s(item, "access_token")?.to_string(),
                        refresh_token: get_s(item, "refresh_token")?.to_string(),
                        expires_at: get_time(item, "token_expires_at")?,
                    },
                ))
            })
            .collect()
    }

    pub(super) async fn delete_grant(&self, account: &str, region: &str) -> Result<(), StoreError> {
        self.delete(key(grant_pk(account), region)).await
    }

    pub(super) async fn set_google_linked(
        &self,
        account: &str,
        linked: bool,
    ) -> Result<(), StoreError> {
        // Only the unlinked state is an item: a linked account (the normal case, and every
        // account from before DISCONNECT was stored) costs nothing.
        let key = key(google_pk(account), GOOGLE_LINK_SK);
        if linked {
            self.delete(key).await?;
        } else {
            let mut item = key;
            item.insert("unlinked_at".into(), s(timestamp(Utc::now())));
            self.put(item).await?;
        }
        Ok(())
    }

    pub(super) async fn google_linked(&self, account: &str) -> Result<bool, StoreError> {
        // Consistent: a report right after a DISCONNECT must see it.
        let item = self
            .get_consistent(google_pk(account), GOOGLE_LINK_SK, true)
            .await?;
        Ok(item.is_none())
    }
}
