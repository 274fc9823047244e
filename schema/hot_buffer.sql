-- Hot buffer: the 21 Hubble tables as the real ingester creates them in PostgreSQL.
-- Unqualified names (the caller sets search_path); idempotent. The physical column order differs
-- from the lake for several tables (later ALTER TABLE ADD COLUMN, reordered CREATE): map by name.

-- core: ledgers
CREATE TABLE IF NOT EXISTS ledgers_row_v2 (
  sequence BIGINT NOT NULL,
  ledger_hash TEXT NOT NULL,
  previous_ledger_hash TEXT,
  closed_at TIMESTAMPTZ NOT NULL,
  protocol_version INTEGER NOT NULL,
  total_coins BIGINT,
  fee_pool BIGINT,
  base_fee INTEGER,
  base_reserve INTEGER,
  max_tx_set_size INTEGER,
  successful_tx_count INTEGER,
  failed_tx_count INTEGER,
  ingestion_timestamp TIMESTAMPTZ,
  ledger_range BIGINT NOT NULL,
  transaction_count INTEGER,
  operation_count INTEGER,
  tx_set_operation_count INTEGER,
  soroban_fee_write1kb BIGINT,
  node_id TEXT,
  signature TEXT,
  ledger_header TEXT,
  bucket_list_size BIGINT,
  live_soroban_state_size BIGINT,
  evicted_keys_count INTEGER,
  PRIMARY KEY (sequence)
);
-- added later: soroban metrics and era tagging
ALTER TABLE ledgers_row_v2 ADD COLUMN IF NOT EXISTS era_id TEXT;
ALTER TABLE ledgers_row_v2 ADD COLUMN IF NOT EXISTS version_label TEXT;
ALTER TABLE ledgers_row_v2 ADD COLUMN IF NOT EXISTS soroban_op_count INTEGER;
ALTER TABLE ledgers_row_v2 ADD COLUMN IF NOT EXISTS total_fee_charged BIGINT;
ALTER TABLE ledgers_row_v2 ADD COLUMN IF NOT EXISTS contract_events_count INTEGER;

-- core: transactions
CREATE TABLE IF NOT EXISTS transactions_row_v2 (
  ledger_sequence BIGINT NOT NULL,
  transaction_hash TEXT NOT NULL,
  source_account TEXT NOT NULL,
  fee_charged BIGINT NOT NULL,
  max_fee BIGINT,
  successful BOOLEAN NOT NULL,
  transaction_result_code TEXT,
  operation_count INTEGER NOT NULL,
  memo_type TEXT,
  memo TEXT,
  created_at TIMESTAMPTZ NOT NULL,
  account_sequence BIGINT,
  ledger_range BIGINT NOT NULL,
  source_account_muxed TEXT,
  fee_account_muxed TEXT,
  inner_transaction_hash TEXT,
  fee_bump_fee BIGINT,
  max_fee_bid BIGINT,
  inner_source_account TEXT,
  timebounds_min_time BIGINT,
  timebounds_max_time BIGINT,
  ledgerbounds_min BIGINT,
  ledgerbounds_max BIGINT,
  min_sequence_number BIGINT,
  min_sequence_age BIGINT,
  soroban_resources_instructions BIGINT,
  soroban_resources_read_bytes BIGINT,
  soroban_resources_write_bytes BIGINT,
  soroban_data_size_bytes INTEGER,
  soroban_data_resources TEXT,
  soroban_fee_base BIGINT,
  soroban_fee_resources BIGINT,
  soroban_fee_refund BIGINT,
  soroban_fee_charged BIGINT,
  soroban_fee_wasted BIGINT,
  soroban_host_function_type TEXT,
  soroban_contract_id TEXT,
  soroban_contract_events_count INTEGER,
  tx_envelope TEXT,
  tx_result TEXT,
  tx_meta TEXT,
  tx_fee_meta TEXT,
  tx_signers TEXT,
  extra_signers TEXT,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (ledger_sequence, transaction_hash)
);
-- added later: signer/rent metrics and the numeric id
ALTER TABLE transactions_row_v2 ADD COLUMN IF NOT EXISTS signatures_count INTEGER;
ALTER TABLE transactions_row_v2 ADD COLUMN IF NOT EXISTS new_account BOOLEAN;
ALTER TABLE transactions_row_v2 ADD COLUMN IF NOT EXISTS rent_fee_charged BIGINT;
ALTER TABLE transactions_row_v2 ADD COLUMN IF NOT EXISTS transaction_id BIGINT;

-- core: operations
CREATE TABLE IF NOT EXISTS operations_row_v2 (
  transaction_hash TEXT NOT NULL,
  operation_index INTEGER NOT NULL,
  ledger_sequence BIGINT NOT NULL,
  source_account TEXT NOT NULL,
  type INTEGER NOT NULL,
  type_string TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  transaction_successful BOOLEAN NOT NULL,
  operation_result_code TEXT,
  operation_trace_code TEXT,
  ledger_range BIGINT NOT NULL,
  source_account_muxed TEXT,
  asset TEXT,
  asset_type TEXT,
  asset_code TEXT,
  asset_issuer TEXT,
  source_asset TEXT,
  source_asset_type TEXT,
  source_asset_code TEXT,
  source_asset_issuer TEXT,
  amount BIGINT,
  source_amount BIGINT,
  destination_min BIGINT,
  starting_balance BIGINT,
  destination TEXT,
  trustline_limit BIGINT,
  trustor TEXT,
  authorize BOOLEAN,
  authorize_to_maintain_liabilities BOOLEAN,
  trust_line_flags INTEGER,
  balance_id TEXT,
  claimants_count INTEGER,
  sponsored_id TEXT,
  offer_id BIGINT,
  price TEXT,
  price_r TEXT,
  buying_asset TEXT,
  buying_asset_type TEXT,
  buying_asset_code TEXT,
  buying_asset_issuer TEXT,
  selling_asset TEXT,
  selling_asset_type TEXT,
  selling_asset_code TEXT,
  selling_asset_issuer TEXT,
  soroban_operation TEXT,
  soroban_function TEXT,
  soroban_contract_id TEXT,
  soroban_auth_required BOOLEAN,
  bump_to BIGINT,
  set_flags INTEGER,
  clear_flags INTEGER,
  home_domain TEXT,
  master_weight INTEGER,
  low_threshold INTEGER,
  medium_threshold INTEGER,
  high_threshold INTEGER,
  data_name TEXT,
  data_value TEXT,
  era_id TEXT,
  version_label TEXT,
  soroban_arguments_json TEXT,
  contract_calls_json JSONB,
  contracts_involved TEXT[],
  max_call_depth INTEGER,
  PRIMARY KEY (ledger_sequence, transaction_hash, operation_index)
);
-- added later: numeric ids and Soroban auth
ALTER TABLE operations_row_v2 ADD COLUMN IF NOT EXISTS transaction_index INTEGER;
ALTER TABLE operations_row_v2 ADD COLUMN IF NOT EXISTS transaction_id BIGINT;
ALTER TABLE operations_row_v2 ADD COLUMN IF NOT EXISTS operation_id BIGINT;
ALTER TABLE operations_row_v2 ADD COLUMN IF NOT EXISTS soroban_auth_credentials_types TEXT[];
ALTER TABLE operations_row_v2 ADD COLUMN IF NOT EXISTS soroban_auth_addresses TEXT[];

-- core: effects
CREATE TABLE IF NOT EXISTS effects_row_v1 (
  ledger_sequence BIGINT NOT NULL,
  transaction_hash TEXT NOT NULL,
  operation_index INTEGER NOT NULL,
  effect_index INTEGER NOT NULL,
  effect_type INTEGER NOT NULL,
  effect_type_string TEXT NOT NULL,
  account_id TEXT,
  amount TEXT,
  asset_code TEXT,
  asset_issuer TEXT,
  asset_type TEXT,
  trustline_limit TEXT,
  authorize_flag BOOLEAN,
  clawback_flag BOOLEAN,
  signer_account TEXT,
  signer_weight INTEGER,
  offer_id BIGINT,
  seller_account TEXT,
  created_at TIMESTAMPTZ NOT NULL,
  ledger_range BIGINT NOT NULL,
  details_json TEXT,
  PRIMARY KEY (ledger_sequence, transaction_hash, operation_index, effect_index)
);
-- added later: era tagging and the numeric operation id
ALTER TABLE effects_row_v1 ADD COLUMN IF NOT EXISTS era_id TEXT;
ALTER TABLE effects_row_v1 ADD COLUMN IF NOT EXISTS version_label TEXT;
ALTER TABLE effects_row_v1 ADD COLUMN IF NOT EXISTS operation_id BIGINT;

-- core: trades
CREATE TABLE IF NOT EXISTS trades_row_v1 (
  ledger_sequence BIGINT NOT NULL,
  transaction_hash TEXT NOT NULL,
  operation_index INTEGER NOT NULL,
  trade_index INTEGER NOT NULL,
  trade_type TEXT,
  trade_timestamp TIMESTAMPTZ NOT NULL,
  seller_account TEXT,
  selling_asset_code TEXT,
  selling_asset_issuer TEXT,
  selling_amount TEXT,
  buyer_account TEXT,
  buying_asset_code TEXT,
  buying_asset_issuer TEXT,
  buying_amount TEXT,
  price TEXT,
  created_at TIMESTAMPTZ NOT NULL,
  ledger_range BIGINT NOT NULL,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (ledger_sequence, transaction_hash, operation_index, trade_index)
);

-- accounts: accounts
CREATE TABLE IF NOT EXISTS accounts_snapshot_v1 (
  account_id TEXT NOT NULL,
  ledger_sequence BIGINT NOT NULL,
  closed_at TIMESTAMPTZ,
  balance TEXT,
  sequence_number BIGINT,
  sequence_ledger BIGINT,
  sequence_time BIGINT,
  num_subentries INTEGER,
  num_sponsoring INTEGER,
  num_sponsored INTEGER,
  home_domain TEXT,
  master_weight INTEGER,
  low_threshold INTEGER,
  med_threshold INTEGER,
  high_threshold INTEGER,
  flags INTEGER,
  auth_required BOOLEAN,
  auth_revocable BOOLEAN,
  auth_immutable BOOLEAN,
  auth_clawback_enabled BOOLEAN,
  signers TEXT,
  sponsor_account TEXT,
  created_at TIMESTAMPTZ,
  updated_at TIMESTAMPTZ,
  ledger_range BIGINT,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (account_id, ledger_sequence)
);

-- accounts: trustlines
CREATE TABLE IF NOT EXISTS trustlines_snapshot_v1 (
  account_id TEXT NOT NULL,
  asset_code TEXT NOT NULL,
  asset_issuer TEXT NOT NULL,
  asset_type TEXT NOT NULL,
  balance TEXT,
  trust_limit TEXT,
  buying_liabilities TEXT,
  selling_liabilities TEXT,
  authorized BOOLEAN,
  authorized_to_maintain_liabilities BOOLEAN,
  clawback_enabled BOOLEAN,
  ledger_sequence BIGINT NOT NULL,
  created_at TIMESTAMPTZ,
  ledger_range BIGINT,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (account_id, asset_code, asset_issuer, asset_type, ledger_sequence)
);

-- accounts: signers
CREATE TABLE IF NOT EXISTS account_signers_snapshot_v1 (
  account_id TEXT NOT NULL,
  signer TEXT NOT NULL,
  ledger_sequence BIGINT NOT NULL,
  weight INTEGER,
  sponsor TEXT,
  deleted BOOLEAN,
  closed_at TIMESTAMPTZ,
  ledger_range BIGINT,
  created_at TIMESTAMPTZ,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (account_id, signer, ledger_sequence)
);

-- accounts: native_balances
CREATE TABLE IF NOT EXISTS native_balances_snapshot_v1 (
  account_id TEXT NOT NULL,
  balance BIGINT,
  buying_liabilities BIGINT,
  selling_liabilities BIGINT,
  num_subentries INTEGER,
  num_sponsoring INTEGER,
  num_sponsored INTEGER,
  sequence_number BIGINT,
  last_modified_ledger BIGINT,
  ledger_sequence BIGINT NOT NULL,
  ledger_range BIGINT,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (account_id, ledger_sequence)
);

-- market: offers
CREATE TABLE IF NOT EXISTS offers_snapshot_v1 (
  offer_id BIGINT NOT NULL,
  seller_account TEXT,
  ledger_sequence BIGINT NOT NULL,
  closed_at TIMESTAMPTZ,
  selling_asset_type TEXT,
  selling_asset_code TEXT,
  selling_asset_issuer TEXT,
  buying_asset_type TEXT,
  buying_asset_code TEXT,
  buying_asset_issuer TEXT,
  amount TEXT,
  price TEXT,
  flags INTEGER,
  created_at TIMESTAMPTZ,
  ledger_range BIGINT,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (offer_id, ledger_sequence)
);

-- market: liquidity_pools
CREATE TABLE IF NOT EXISTS liquidity_pools_snapshot_v1 (
  liquidity_pool_id TEXT NOT NULL,
  ledger_sequence BIGINT NOT NULL,
  closed_at TIMESTAMPTZ,
  pool_type TEXT,
  fee INTEGER,
  trustline_count INTEGER,
  total_pool_shares BIGINT,
  asset_a_type TEXT,
  asset_a_code TEXT,
  asset_a_issuer TEXT,
  asset_a_amount BIGINT,
  asset_b_type TEXT,
  asset_b_code TEXT,
  asset_b_issuer TEXT,
  asset_b_amount BIGINT,
  created_at TIMESTAMPTZ,
  ledger_range BIGINT,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (liquidity_pool_id, ledger_sequence)
);

-- market: claimable_balances
CREATE TABLE IF NOT EXISTS claimable_balances_snapshot_v1 (
  balance_id TEXT NOT NULL,
  sponsor TEXT,
  ledger_sequence BIGINT NOT NULL,
  closed_at TIMESTAMPTZ,
  asset_type TEXT,
  asset_code TEXT,
  asset_issuer TEXT,
  amount BIGINT,
  claimants_count INTEGER,
  flags INTEGER,
  created_at TIMESTAMPTZ,
  ledger_range BIGINT,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (balance_id, ledger_sequence)
);

-- soroban: contract_events
CREATE TABLE IF NOT EXISTS contract_events_stream_v1 (
  event_id TEXT,
  contract_id TEXT NOT NULL,
  ledger_sequence BIGINT NOT NULL,
  transaction_hash TEXT NOT NULL,
  closed_at TIMESTAMPTZ NOT NULL,
  event_type TEXT NOT NULL,
  in_successful_contract_call BOOLEAN,
  successful BOOLEAN,
  contract_event_xdr TEXT,
  topics_json TEXT,
  topics_decoded TEXT,
  data_xdr TEXT,
  data_decoded TEXT,
  topic_count INTEGER,
  event_index INTEGER NOT NULL,
  operation_index INTEGER,
  topic0_decoded TEXT,
  topic1_decoded TEXT,
  topic2_decoded TEXT,
  topic3_decoded TEXT,
  created_at TIMESTAMPTZ,
  ledger_range BIGINT NOT NULL,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (ledger_sequence, transaction_hash, event_index)
);

-- soroban: contract_data
CREATE TABLE IF NOT EXISTS contract_data_snapshot_v1 (
  contract_id TEXT NOT NULL,
  ledger_sequence BIGINT NOT NULL,
  ledger_key_hash TEXT NOT NULL,
  contract_key_type TEXT,
  contract_durability TEXT,
  asset_code TEXT,
  asset_issuer TEXT,
  asset_type TEXT,
  balance_holder TEXT,
  balance TEXT,
  last_modified_ledger INTEGER,
  ledger_entry_change INTEGER,
  deleted BOOLEAN,
  closed_at TIMESTAMPTZ,
  contract_data_xdr TEXT,
  created_at TIMESTAMPTZ,
  ledger_range BIGINT,
  token_name TEXT,
  token_symbol TEXT,
  token_decimals INTEGER,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (contract_id, ledger_key_hash, ledger_sequence)
);

-- soroban: contract_code
CREATE TABLE IF NOT EXISTS contract_code_snapshot_v1 (
  contract_code_hash TEXT NOT NULL,
  ledger_key_hash TEXT,
  contract_code_ext_v INTEGER,
  last_modified_ledger INTEGER,
  ledger_entry_change INTEGER,
  deleted BOOLEAN,
  closed_at TIMESTAMPTZ,
  ledger_sequence BIGINT NOT NULL,
  n_instructions BIGINT,
  n_functions BIGINT,
  n_globals BIGINT,
  n_table_entries BIGINT,
  n_types BIGINT,
  n_data_segments BIGINT,
  n_elem_segments BIGINT,
  n_imports BIGINT,
  n_exports BIGINT,
  n_data_segment_bytes BIGINT,
  created_at TIMESTAMPTZ,
  ledger_range BIGINT,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (contract_code_hash, ledger_sequence)
);

-- soroban: restored_keys
CREATE TABLE IF NOT EXISTS restored_keys_state_v1 (
  key_hash TEXT NOT NULL,
  ledger_sequence BIGINT NOT NULL,
  contract_id TEXT,
  key_type TEXT,
  durability TEXT,
  restored_from_ledger BIGINT,
  closed_at TIMESTAMPTZ,
  ledger_range BIGINT,
  created_at TIMESTAMPTZ,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (key_hash, ledger_sequence)
);

-- state: ttl
CREATE TABLE IF NOT EXISTS ttl_snapshot_v1 (
  key_hash TEXT NOT NULL,
  ledger_sequence BIGINT NOT NULL,
  live_until_ledger_seq BIGINT,
  ttl_remaining BIGINT,
  expired BOOLEAN,
  last_modified_ledger INTEGER,
  deleted BOOLEAN,
  closed_at TIMESTAMPTZ,
  created_at TIMESTAMPTZ,
  ledger_range BIGINT,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (key_hash, ledger_sequence)
);

-- state: evicted_keys
CREATE TABLE IF NOT EXISTS evicted_keys_state_v1 (
  key_hash TEXT NOT NULL,
  ledger_sequence BIGINT NOT NULL,
  contract_id TEXT,
  key_type TEXT,
  durability TEXT,
  closed_at TIMESTAMPTZ,
  ledger_range BIGINT,
  created_at TIMESTAMPTZ,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (key_hash, ledger_sequence)
);

-- state: config_settings
CREATE TABLE IF NOT EXISTS config_settings_snapshot_v1 (
  config_setting_id INTEGER NOT NULL,
  ledger_sequence BIGINT NOT NULL,
  last_modified_ledger INTEGER,
  deleted BOOLEAN,
  closed_at TIMESTAMPTZ,
  ledger_max_instructions BIGINT,
  tx_max_instructions BIGINT,
  fee_rate_per_instructions_increment BIGINT,
  tx_memory_limit BIGINT,
  ledger_max_read_ledger_entries BIGINT,
  ledger_max_read_bytes BIGINT,
  ledger_max_write_ledger_entries BIGINT,
  ledger_max_write_bytes BIGINT,
  tx_max_read_ledger_entries BIGINT,
  tx_max_read_bytes BIGINT,
  tx_max_write_ledger_entries BIGINT,
  tx_max_write_bytes BIGINT,
  contract_max_size_bytes BIGINT,
  config_setting_xdr TEXT,
  created_at TIMESTAMPTZ,
  ledger_range BIGINT,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (config_setting_id, ledger_sequence)
);

-- later: contract_creations
CREATE TABLE IF NOT EXISTS contract_creations_v1 (
  contract_id TEXT NOT NULL,
  creator_address TEXT,
  wasm_hash TEXT,
  created_ledger BIGINT NOT NULL,
  created_at TIMESTAMPTZ,
  ledger_range BIGINT,
  era_id TEXT,
  version_label TEXT,
  PRIMARY KEY (contract_id)
);

-- later: token_transfers
CREATE TABLE IF NOT EXISTS token_transfers_stream_v1 (
  ledger_sequence INTEGER NOT NULL,
  transaction_hash TEXT NOT NULL,
  transaction_id BIGINT,
  operation_id BIGINT,
  operation_index INTEGER,
  event_type TEXT,
  "from" TEXT,
  "to" TEXT,
  asset TEXT,
  asset_type TEXT,
  asset_code TEXT,
  asset_issuer TEXT,
  amount DOUBLE PRECISION,
  amount_raw TEXT,
  contract_id TEXT,
  closed_at TIMESTAMPTZ,
  created_at TIMESTAMPTZ,
  ledger_range INTEGER,
  era_id TEXT,
  version_label TEXT
);
