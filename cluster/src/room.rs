//! Room names and the wire form of room and broadcast pushes, shared by web (which checks names
//! and assigns mids) and the comet (which delivers) (docs/decisions.md#d51-rooms-are-names-membership-lives-in-the-store).

/// Longest room name, in bytes.
pub const MAX_ROOM: usize = 64;

/// Most keys one page of a room's online keys may hold (`/1/admin/room/online`).
pub const MAX_PAGE: u32 = 1000;

/// The `gid` of a message pushed to a room (docs/protocol.md#message-json).
pub const ROOM_GID: u32 = 1;

/// The `gid` of a message pushed to every connection.
pub const BROADCAST_GID: u32 = 2;

/// True for a usable room name: 1 to [`MAX_ROOM`] bytes, like a key but shorter.
pub fn valid(room: &str) -> bool {
    !room.is_empty() && room.len() <= MAX_ROOM
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_1_to_64_bytes() {
        assert!(valid("r"));
        assert!(valid(&"r".repeat(MAX_ROOM)));
        assert!(!valid(""));
        assert!(!valid(&"r".repeat(MAX_ROOM + 1)));
    }
}
