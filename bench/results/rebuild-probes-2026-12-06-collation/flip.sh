#!/usr/bin/env bash
# flip.sh C|default: declares every entity-id column of migration 019 with that collation on the kept probe
# database (the same statements as the migration; indexes rebuilt), and prints how long it took.
set -euo pipefail
COLL=$1; KEEP=/tmp/glp/keep; PORT=$(cat $KEEP/port)
sql=""
for tc in persons.person_id groups.group_id resolved_person_identifiers.person_id resolved_group_identifiers.group_id \
  person_identifier_search.person_id group_identifier_search.group_id resolved_person_traits.person_id \
  resolved_group_traits.group_id person_participants.person_id group_participants.group_id memberships.person_id \
  memberships.group_id resolved_membership_identifiers.person_id resolved_membership_identifiers.group_id \
  person_id_aliases.old_id person_id_aliases.new_id person_id_aliases.merged_into_id group_id_aliases.old_id \
  group_id_aliases.new_id group_id_aliases.merged_into_id entity_id_overrides.entity_id; do
  sql+="ALTER TABLE ${tc%.*} ALTER COLUMN ${tc#*.} TYPE text COLLATE \"$COLL\"; "
done
start=$(date +%s.%N)
psql -q -h $KEEP/sock -p "$PORT" -U postgres -d nexus -v ON_ERROR_STOP=1 -c "BEGIN; $sql COMMIT;" -c "CHECKPOINT"
echo "{\"flip\":\"$COLL\",\"seconds\":$(echo "$(date +%s.%N) - $start" | bc)}"
