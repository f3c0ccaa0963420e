//! Memberships followed through nested groups: the groups an object is in
//! by way of other groups, and the members a group has by way of the groups
//! in it. Each object is reached once, at its smallest depth, however the
//! groups nest (cycles included).

use std::collections::HashSet;

use crate::domain::{MemberKind, Membership, SourceId};

use super::keys::Scope;
use super::state::{StateStore, StoreError};

/// A membership reached from the object a walk starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub membership: Membership,
    /// 1 for a direct membership, 2 through one group, and so on.
    pub depth: u32,
    /// The group it was reached through; `None` at depth 1.
    pub via: Option<SourceId>,
}

impl Reached {
    /// A direct membership, as a walk would reach it.
    pub fn direct(membership: Membership) -> Self {
        Self {
            membership,
            depth: 1,
            via: None,
        }
    }
}

/// Which way a walk follows memberships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From a member to the groups it is in.
    Up,
    /// From a group to its members.
    Down,
}

impl Direction {
    /// The end of a membership the walk comes from, and the one it reaches.
    fn ends(self, m: &Membership) -> (&SourceId, &SourceId) {
        match self {
            Direction::Up => (&m.member, &m.group),
            Direction::Down => (&m.group, &m.member),
        }
    }

    /// Whether the object reached has memberships to follow further.
    fn goes_on(self, m: &Membership) -> bool {
        self == Direction::Up || m.member_kind == MemberKind::Group
    }
}

impl StateStore {
    /// Every group `member` is in, directly or through nested groups.
    pub async fn groups_reached(
        &self,
        scope: &Scope,
        member: &SourceId,
    ) -> Result<Vec<Reached>, StoreError> {
        self.walk(scope, member, Direction::Up).await
    }

    /// Every member of `group`, directly or through nested groups (those
    /// groups included); never the group itself, even where a cycle leads
    /// back to it.
    pub async fn members_reached(
        &self,
        scope: &Scope,
        group: &SourceId,
    ) -> Result<Vec<Reached>, StoreError> {
        self.walk(scope, group, Direction::Down).await
    }

    /// Breadth first, one batched read per depth: what a depth reaches
    /// first is kept, what was reached before is passed over.
    async fn walk(
        &self,
        scope: &Scope,
        start: &SourceId,
        direction: Direction,
    ) -> Result<Vec<Reached>, StoreError> {
        let mut seen = HashSet::from([start.clone()]);
        let mut frontier = vec![start.clone()];
        let mut reached = Vec::new();
        let mut depth = 1;
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for m in self.step(scope, &frontier, direction).await? {
                let (from, to) = direction.ends(&m);
                if !seen.insert(to.clone()) {
                    continue;
                }
                if direction.goes_on(&m) {
                    next.push(to.clone());
                }
                let via = (depth > 1).then(|| from.clone());
                reached.push(Reached {
                    membership: m,
                    depth,
                    via,
                });
            }
            frontier = next;
            depth += 1;
        }
        Ok(reached)
    }

    /// The memberships one step away from each of `from`.
    async fn step(
        &self,
        scope: &Scope,
        from: &[SourceId],
        direction: Direction,
    ) -> Result<Vec<Membership>, StoreError> {
        match direction {
            Direction::Up => self.member_of_each(scope, from).await,
            Direction::Down => self.members_each(scope, from).await,
        }
    }
}
