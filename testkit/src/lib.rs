//! Test harness for real ZooKeeper and Redis (being built).
