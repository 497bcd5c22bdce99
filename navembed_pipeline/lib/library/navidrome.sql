-- Navidrome's own schema for the tables navembed reads: library, folder, media_file (with their indexes).
--
-- Source: github.com/navidrome/navidrome at commit 295886cb9a432d375afa796ed8a32db0775464af
-- (v0.63.2-111-g295886cb9, 2026-08-21), i.e. the state after applying every goose migration in
-- db/migrations up to and including 20260819204637_add_artwork_trace_columns.sql.
-- Derived by replaying all migrations (the .sql Up sections and the SQL of the .go ones, in version
-- order) on an empty SQLite database and copying sqlite_master.sql verbatim, so the text below is what
-- `sqlite3 navidrome.db .schema media_file` prints on a fresh install of that version. For these three
-- tables, release v0.63.2 (be10f89c) differs only by lacking the index
-- media_file_missing_library_order_title (migration 20260714123822).
--
-- Left out on purpose: the other tables, the seed row of `library` (id 1, "Music Library"), and the
-- FTS5 triggers media_file_fts_ai/ad/au (20260220173400), which need the media_file_fts virtual table.
-- Navidrome has no CUE-sheet columns: a CUE image is one media_file row for the whole audio file.
--
-- Timestamps are written by mattn/go-sqlite3 as 'YYYY-MM-DD HH:MM:SS[.fffffffff]+HH:MM';
-- media_file.path is relative to library.path with '/' separators (since 0.55, migration 20241026183640);
-- media_file.updated_at is the file's mtime, and is set to "now" when the scanner flips `missing`.

CREATE TABLE library (
			id integer primary key autoincrement,
			name text not null unique,
			path text not null unique,
			remote_path text null default '',
			last_scan_at datetime not null default '0000-00-00 00:00:00',
			updated_at datetime not null default current_timestamp,
			created_at datetime not null default current_timestamp
		, last_scan_started_at datetime default '0000-00-00 00:00:00' not null, full_scan_in_progress boolean default false not null, total_songs integer default 0 not null, total_albums integer default 0 not null, total_artists integer default 0 not null, total_folders integer default 0 not null, total_files integer default 0 not null, total_missing_files integer default 0 not null, total_size integer default 0 not null, total_duration real DEFAULT 0, default_new_users boolean DEFAULT false);

CREATE TABLE folder(
	id varchar not null
		primary key,
	library_id integer not null
	    		references library (id)
	    		 	on delete cascade,
	path varchar default '' not null,
	name varchar default '' not null,
	missing boolean default false not null,
	parent_id varchar default '' not null,
	num_audio_files integer default 0 not null,
	num_playlists integer default 0 not null,
	image_files jsonb default '[]' not null,
	images_updated_at datetime default '0000-00-00 00:00:00' not null,
	updated_at datetime default (datetime(current_timestamp, 'localtime')) not null,
	created_at datetime default (datetime(current_timestamp, 'localtime')) not null
, hash varchar default '' not null);
CREATE INDEX folder_parent_id on folder(parent_id);

CREATE TABLE "media_file"
(
    id                      varchar(255)                         not null
        primary key,
    path                    varchar(255)           default ''    not null,
    title                   varchar(255)           default ''    not null,
    album                   varchar(255)           default ''    not null,
    artist                  varchar(255)           default ''    not null,
    artist_id               varchar(255)           default ''    not null,
    album_artist            varchar(255)           default ''    not null,
    album_id                varchar(255)           default ''    not null,
    has_cover_art           bool                   default FALSE not null,
    track_number            integer                default 0     not null,
    disc_number             integer                default 0     not null,
    year                    integer                default 0     not null,
    size                    integer                default 0     not null,
    suffix                  varchar(255)           default ''    not null,
    duration                real                   default 0     not null,
    bit_rate                integer                default 0     not null,
    genre                   varchar(255)           default ''    not null,
    compilation             bool                   default FALSE not null,
    created_at              datetime,
    updated_at              datetime,
    full_text               varchar(255)           default '',
    album_artist_id         varchar(255)           default '',
    date                    varchar(255)           default ''    not null,
    original_year           int                    default 0     not null,
    original_date           varchar(255)           default ''    not null,
    release_year            int                    default 0     not null,
    release_date            varchar(255)           default ''    not null,
    order_album_name        varchar collate NOCASE default ''    not null,
    order_album_artist_name varchar collate NOCASE default ''    not null,
    order_artist_name       varchar collate NOCASE default ''    not null,
    sort_album_name         varchar collate NOCASE default ''    not null,
    sort_artist_name        varchar collate NOCASE default ''    not null,
    sort_album_artist_name  varchar collate NOCASE default ''    not null,
    sort_title              varchar collate NOCASE default ''    not null,
    disc_subtitle           varchar                default ''    not null,
    catalog_num             varchar                default ''    not null,
    comment                 varchar                default ''    not null,
    order_title             varchar collate NOCASE default ''    not null,
    mbz_recording_id        varchar                default ''    not null,
    mbz_album_id            varchar                default ''    not null,
    mbz_artist_id           varchar                default ''    not null,
    mbz_album_artist_id     varchar                default ''    not null,
    mbz_album_type          varchar                default ''    not null,
    mbz_album_comment       varchar                default ''    not null,
    mbz_release_track_id    varchar                default ''    not null,
    channels                integer                default 0     not null,
    lyrics                  jsonb                  default '[]'  not null,
    sample_rate             integer                default 0     not null,
    library_id              integer                default 1     not null
        references library
            on delete cascade
, folder_id varchar default '' not null, pid varchar default '' not null, missing boolean default false not null, mbz_release_group_id varchar default '' not null, tags jsonb default '{}' not null, participants jsonb default '{}' not null, explicit_status varchar default '' not null, birth_time datetime default current_timestamp not null, rg_album_gain real, rg_album_peak real, rg_track_gain real, rg_track_peak real, average_rating REAL NOT NULL DEFAULT 0, search_participants TEXT NOT NULL DEFAULT '', search_normalized TEXT NOT NULL DEFAULT '', codec VARCHAR(255) DEFAULT '' NOT NULL, probe_data TEXT DEFAULT '' NOT NULL, bpm integer, bit_depth integer);
CREATE INDEX media_file_album_id
    on media_file (album_id);
CREATE INDEX media_file_artist_album_id
    on media_file (album_artist_id);
CREATE INDEX media_file_artist_id
    on media_file (artist_id);
CREATE INDEX media_file_channels
    on media_file (channels);
CREATE INDEX media_file_duration
    on media_file (duration);
CREATE INDEX media_file_genre
    on media_file (genre);
CREATE INDEX media_file_mbz_track_id
    on media_file (mbz_recording_id);
CREATE INDEX media_file_order_title
    on media_file (order_title);
CREATE INDEX media_file_path
    on media_file (path);
CREATE INDEX media_file_path_nocase
    on media_file (path collate NOCASE);
CREATE INDEX media_file_sample_rate
    on media_file (sample_rate);
CREATE INDEX media_file_title
    on media_file (title);
CREATE INDEX media_file_track_number
    on media_file (disc_number, track_number);
CREATE INDEX media_file_year
    on media_file (year);
CREATE INDEX media_file_folder_id
 	on media_file (folder_id);
CREATE INDEX media_file_pid
	on media_file (pid);
CREATE INDEX media_file_mbz_release_track_id
	on media_file (mbz_release_track_id);
CREATE INDEX media_file_codec ON media_file(codec);
CREATE INDEX media_file_missing_library_id
    on media_file(missing, library_id);
CREATE INDEX media_file_bpm on media_file (bpm);
CREATE INDEX media_file_created_at ON media_file(created_at, id);
CREATE INDEX media_file_updated_at ON media_file(updated_at, id);
CREATE INDEX media_file_album_sort
	on media_file(order_album_name, album_id, disc_number, track_number, order_artist_name, title);
CREATE INDEX media_file_artist_sort
	on media_file(order_artist_name, order_album_name, release_date, disc_number, track_number);
CREATE INDEX media_file_album_artist_sort
	on media_file(order_album_artist_name, order_album_name, release_date, disc_number, track_number);
CREATE INDEX media_file_missing_library_order_title
	on media_file(missing, library_id, order_title, id);
