//! The accounts' user lists: the people the panel codes belong to, which the skill's household
//! members come from.

use super::*;

impl Simulator {
    /// The account's panel users, by number (`GET /v1/accounts/{account}/users`).
    pub fn users(&self, account: &str) -> UserList {
        let mut st = self.lock();
        let now = self.clock.now();
        Self::log(&mut st, "users", account, None, now);
        let mut list = Self::user_list(&st, account);
        if self.defects().users_without_ids {
            list.revision = None;
            for u in &mut list.users {
                u.id = None;
            }
        }
        list
    }

    pub(super) fn user_list(st: &State, account: &str) -> UserList {
        let mut users: Vec<PanelUser> = st
            .users
            .get(account)
            .into_iter()
            .flatten()
            .map(|u| PanelUser {
                id: u.id.clone(),
                number: u.number,
                name: u.name.clone(),
            })
            .collect();
        users.sort_by_key(|u| u.number);
        UserList {
            revision: Some(st.users_revision.get(account).copied().unwrap_or(0)),
            users,
        }
    }

    /// Puts a panel user on a number and tells the webhook. With the id of the person on that
    /// number it renames them; otherwise the number is given to a new person (a new id), as a
    /// vendor's app does when a slot is reused. The same name again without an id is no change.
    pub fn put_user(&self, account: &str, user: UserConfig) -> UserList {
        let mut st = self.lock();
        let list = st.users.entry(account.to_string()).or_default();
        let current = list.iter().find(|u| u.number == user.number).cloned();
        let id = match (&user.id, &current) {
            (Some(id), _) => id.clone(),
            (None, Some(c)) if c.name == user.name => {
                return Self::user_list(&st, account);
            }
            (None, _) => new_user_id(),
        };
        list.retain(|u| u.number != user.number);
        list.push(UserConfig {
            id: Some(id),
            ..user
        });
        self.users_changed(&mut st, account)
    }

    /// Removes a panel user; `None` if there was none with that number.
    pub fn remove_user(&self, account: &str, number: u16) -> Option<UserList> {
        let mut st = self.lock();
        let list = st.users.get_mut(account)?;
        let before = list.len();
        list.retain(|u| u.number != number);
        if list.len() == before {
            return None;
        }
        Some(self.users_changed(&mut st, account))
    }

    pub(super) fn users_changed(&self, st: &mut State, account: &str) -> UserList {
        *st.users_revision.entry(account.to_string()).or_default() += 1;
        let list = Self::user_list(st, account);
        self.emit_app(
            account.to_string(),
            self.clock.now(),
            EventKind::UsersChanged {
                users: list.users.clone(),
                revision: list.revision,
            },
        );
        list
    }
}
