SET work_mem='256MB'; SET jit=off;
CREATE TEMP TABLE tt AS SELECT * FROM resolved_person_traits;
CREATE TEMP TABLE ent AS SELECT p.person_id i, p.identifier_count n, 1::bigint bx, 1::bigint be, 1::bigint br, 'x'::text c,
 (SELECT trait_row_id FROM resolved_person_traits t WHERE t.person_id=p.person_id AND trait_name='email') r0, p.email v0,
 (SELECT trait_row_id FROM resolved_person_traits t WHERE t.person_id=p.person_id AND trait_name='name') r1, p.name v1,
 (SELECT trait_row_id FROM resolved_person_traits t WHERE t.person_id=p.person_id AND trait_name='phone') r2, p.phone v2,
 (SELECT trait_row_id FROM resolved_person_traits t WHERE t.person_id=p.person_id AND trait_name='title') r3, p.title v3,
 (SELECT trait_row_id FROM resolved_person_traits t WHERE t.person_id=p.person_id AND trait_name='timezone') r4, p.timezone v4
 FROM persons p;
ANALYZE tt; ANALYZE ent;
\timing on
CREATE TEMP TABLE out1 AS SELECT s.i, s.n, s.bx, s.be, s.br, s.c, coalesce(t0.trait_value, s.v0) a, coalesce(t1.trait_value, s.v1) b, coalesce(t2.trait_value, s.v2) c2, coalesce(t3.trait_value, s.v3) d, coalesce(t4.trait_value, s.v4) e FROM ent s
 LEFT JOIN tt t0 ON t0.person_id = s.i AND t0.trait_row_id = s.r0
 LEFT JOIN tt t1 ON t1.person_id = s.i AND t1.trait_row_id = s.r1
 LEFT JOIN tt t2 ON t2.person_id = s.i AND t2.trait_row_id = s.r2
 LEFT JOIN tt t3 ON t3.person_id = s.i AND t3.trait_row_id = s.r3
 LEFT JOIN tt t4 ON t4.person_id = s.i AND t4.trait_row_id = s.r4;
CREATE TEMP TABLE out2 AS SELECT s.i, s.n, s.bx, s.be, s.br, s.c, coalesce(f.a, s.v0) a, coalesce(f.b, s.v1) b, coalesce(f.c2, s.v2) c2, coalesce(f.d, s.v3) d, coalesce(f.e, s.v4) e FROM ent s
 LEFT JOIN (SELECT t.person_id, max(t.trait_value) FILTER (WHERE t.trait_row_id = x.r0) a, max(t.trait_value) FILTER (WHERE t.trait_row_id = x.r1) b, max(t.trait_value) FILTER (WHERE t.trait_row_id = x.r2) c2, max(t.trait_value) FILTER (WHERE t.trait_row_id = x.r3) d, max(t.trait_value) FILTER (WHERE t.trait_row_id = x.r4) e
   FROM tt t JOIN ent x ON x.i = t.person_id GROUP BY t.person_id) f ON f.person_id = s.i;
CREATE TEMP TABLE out3 AS SELECT s.i, s.n, s.bx, s.be, s.br, s.c, coalesce(t0.trait_value, s.v0) a, coalesce(t1.trait_value, s.v1) b, coalesce(t2.trait_value, s.v2) c2, coalesce(t3.trait_value, s.v3) d, coalesce(t4.trait_value, s.v4) e FROM ent s
 LEFT JOIN tt t0 ON t0.trait_row_id = s.r0
 LEFT JOIN tt t1 ON t1.trait_row_id = s.r1
 LEFT JOIN tt t2 ON t2.trait_row_id = s.r2
 LEFT JOIN tt t3 ON t3.trait_row_id = s.r3
 LEFT JOIN tt t4 ON t4.trait_row_id = s.r4;
SELECT (SELECT count(*) FROM out1), (SELECT count(*) FROM (SELECT * FROM out1 EXCEPT SELECT * FROM out2) z), (SELECT count(*) FROM (SELECT * FROM out1 EXCEPT SELECT * FROM out3) z);
