//! The rows the queue's statements read, as named structs: each read by column position,
//! in the order its statement selects them, by any dialect.

/// A struct of a statement's columns, in their order, readable from any database's row.
macro_rules! row {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub(crate) struct $name {
            $($(#[$field_meta])* pub(crate) $field: $ty,)*
        }

        impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for $name
        where
            usize: sqlx::ColumnIndex<R>,
            $($ty: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,)*
        {
            #[allow(unused_assignments)]
            fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
                let mut column = 0_usize;
                Ok(Self {
                    $($field: {
                        let value = row.try_get(column)?;
                        column += 1;
                        value
                    },)*
                })
            }
        }
    };
}

row! {
    /// A job a worker took and started (`take`).
    Taken {
        id: String,
        /// The stored delivery's fields, as the door wrote them.
        delivery: Vec<u8>,
        body: Vec<u8>,
        /// The attempt just started, from 1.
        attempt: i64,
        max_attempts: i64,
    }
}

row! {
    /// A running job whose lease lapsed (`lapsed`).
    Lapsed {
        id: String,
        attempt: i64,
        max_attempts: i64,
        holder: String,
    }
}

row! {
    /// The jobs of a queue by state (`counts`).
    CountsRow {
        waiting: i64,
        running: i64,
        retrying: i64,
        dead: i64,
        done: i64,
    }
}

row! {
    /// A dead letter (`dead`).
    DeadRow {
        id: String,
        delivery: Vec<u8>,
        attempt: i64,
        last_error: Option<String>,
    }
}

row! {
    /// A job in a listing.
    SummaryRow {
        id: String,
        state: String,
        attempt: i64,
        max_attempts: i64,
        last_error: Option<String>,
        event_id: String,
        layer: String,
        event_type: Option<String>,
        tenant: Option<String>,
        received_at: i64,
    }
}

row! {
    /// One job, whole (`job`).
    DetailRow {
        id: String,
        state: String,
        attempt: i64,
        max_attempts: i64,
        last_error: Option<String>,
        delivery: Vec<u8>,
        body: Vec<u8>,
    }
}

row! {
    /// One attempt of a job (`attempts`).
    AttemptRow {
        attempt: i64,
        worker: Option<String>,
        started_at: i64,
        ended_at: Option<i64>,
        outcome: String,
        error: Option<String>,
    }
}

row! {
    /// The activity's count of one kind in one tick (`ACTIVITY`).
    TickRow {
        tick: i64,
        kind: String,
        n: i64,
    }
}

row! {
    /// The attempts that ended in a bucket of the activity, by outcome.
    EndedRow {
        bucket: i64,
        outcome: String,
        attempts: i64,
    }
}

row! {
    /// The deliveries accepted in a bucket of the activity.
    AcceptedRow {
        bucket: i64,
        jobs: i64,
    }
}
