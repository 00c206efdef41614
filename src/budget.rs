//! Pipeline stage 5: budgets, enforced by reservation (placeholder until the budget module lands: no limits).

use rust_decimal::Decimal;

use crate::auth::Principal;
use crate::error::Error;
use crate::policy::Policy;

#[derive(Clone, Default)]
pub struct Budgets {}

/// Money held for one in-flight request. Settle it with the actual cost; dropping it releases everything.
#[derive(Debug)]
pub struct Reservation {
    pub amount: Decimal,
}

impl Reservation {
    pub fn settle(self, _actual: Decimal) {}
}

impl Budgets {
    pub fn reserve(
        &self,
        _principal: &Principal,
        _policy: &Policy,
        amount: Decimal,
        _local: bool,
    ) -> Result<Reservation, Error> {
        Ok(Reservation { amount })
    }
}
