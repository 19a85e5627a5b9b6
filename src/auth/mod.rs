//! Who is calling Berth's auth API: bearer tokens, subjects, groups and roles.
