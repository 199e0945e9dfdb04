//! Contact ID (SIA DC-05): the event codes and qualifiers this project sends. A Contact ID
//! event is `QEEE GG CCC`: qualifier, event code, partition, and a zone or user number.

/// Contact ID event codes.
pub mod codes {
    /// Duress, with the user number.
    pub const DURESS: &str = "121";
    /// Burglary, with the zone number.
    pub const BURGLARY: &str = "130";
    /// Burglary "near alarm", with the zone number: an armed entry zone opened and the entry
    /// delay runs. Sent at once so the receiver can supervise the entry (crash-and-smash):
    /// Contact ID has no dedicated "pending alarm" event, and 138 is the burglary event a
    /// receiver already treats as "may become an alarm".
    pub const NEAR_ALARM: &str = "138";
    /// Open/close by user: qualifier 1 = open (disarm), 3 = close (arm away).
    pub const OPEN_CLOSE_BY_USER: &str = "401";
    /// Cancel by user: an alarm that was transmitted is called off by a user code.
    pub const CANCEL: &str = "406";
    /// Armed stay (and night), qualifier 3.
    pub const ARMED_STAY: &str = "441";
    pub const ZONE_BYPASS: &str = "570";
    /// Communication trouble: the skill's second path reports, with the member's user number,
    /// a voice attempt the panel cloud could not be reached for (a normal attempt's event, the
    /// same length on the wire as a duress's 121).
    pub const COMMUNICATION_TROUBLE: &str = "350";
}

/// Qualifier 1: new event or opening. Qualifier 3: restore or closing.
pub const NEW_EVENT: u8 = 1;
pub const CLOSING: u8 = 3;

/// Whether CCC is a user number (open/close, cancel, duress) rather than a zone.
pub fn is_user_event(code: &str) -> bool {
    code == codes::DURESS || code.starts_with('4')
}
