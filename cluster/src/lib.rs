//! What every gopush process shares (being built).
