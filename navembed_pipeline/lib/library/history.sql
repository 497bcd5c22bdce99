-- Navidrome's own schema for the listening-history tables navembed reads: user, user_library, annotation.
--
-- Source: github.com/navidrome/navidrome at commit 295886cb9a432d375afa796ed8a32db0775464af, the same
-- state as navidrome.sql. Derived by executing, on SQLite, the statements of the migrations
-- that last shaped these tables, in version order, and copying sqlite_master.sql verbatim:
--   user:         20241024125533_fix_sort_tags_collation_and_index.sql (user_dg_tmp, renamed to user,
--                 and its index) + 20260815015320_add_user_scrobble_filter.sql (ADD COLUMN);
--   user_library: 20250701010108_add_multi_library_support.go (admins see every library regardless);
--   annotation:   20250701010102_add_annotation_user_foreign_key.sql (annotation_tmp, renamed, and its
--                 indexes) + 20251109010105_add_annotation_rating_date.sql (ADD COLUMN rated_at).
-- Earlier shapes of annotation (Navidrome < 0.53) also had ann_id as primary key; before 0.59 there is
-- no rated_at; before 0.58 no user_library (every user sees library 1). The reader copes with all three.
--
-- item_type is 'media_file', 'album' or 'artist' (since 20200131183653); play_date, starred_at and
-- rated_at are go-sqlite3 text timestamps ('YYYY-MM-DD HH:MM:SS[.fffffffff]+HH:MM', normalised by
-- 20260316000000) or NULL; play_count and rating default to 0.

CREATE TABLE "user"
(
    id             varchar(255)                              not null
        primary key,
    user_name      varchar(255)                default ''    not null
        unique,
    name           varchar(255) collate NOCASE default ''    not null,
    email          varchar(255)                default ''    not null,
    password       varchar(255)                default ''    not null,
    is_admin       bool                        default FALSE not null,
    last_login_at  datetime,
    last_access_at datetime,
    created_at     datetime                                  not null,
    updated_at     datetime                                  not null
, scrobble_filter varchar default '' not null);

CREATE INDEX user_username_password
    on user(user_name collate NOCASE, password);

CREATE TABLE user_library (
			user_id VARCHAR(255) NOT NULL,
			library_id INTEGER NOT NULL,
			PRIMARY KEY (user_id, library_id),
			FOREIGN KEY (user_id) REFERENCES user(id) ON DELETE CASCADE,
			FOREIGN KEY (library_id) REFERENCES library(id) ON DELETE CASCADE
		);

CREATE INDEX idx_user_library_library_id ON user_library(library_id);

CREATE INDEX idx_user_library_user_id ON user_library(user_id);

CREATE TABLE "annotation"
(
	user_id     varchar(255)    not null
        REFERENCES user(id)
            ON DELETE CASCADE
            ON UPDATE CASCADE,
	item_id     varchar(255)    default '' not null,
	item_type   varchar(255)    default '' not null,
	play_count  integer         default 0,
	play_date   datetime,
	rating      integer         default 0,
	starred     bool            default FALSE not null,
	starred_at  datetime, rated_at datetime,
	unique (user_id, item_id, item_type)
);

CREATE INDEX annotation_play_count
    on annotation (play_count);

CREATE INDEX annotation_play_date
    on annotation (play_date);

CREATE INDEX annotation_rating
    on annotation (rating);

CREATE INDEX annotation_starred
    on annotation (starred);

CREATE INDEX annotation_starred_at
    on annotation (starred_at);

