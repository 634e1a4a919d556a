#!/bin/bash
# Prepared in session 43, not yet run (about 25 min alone on the 2-core VM): pe-only and de-only arms of
# model.icr_form_table (the in-context fit's log-ridge gets a second trained per-j table for the given form, where one
# pair's residual is its own shadowing; in the latent form one pair reveals the cell's power offset). The base arms
# are session 43's (docs/results/offset_stated_s43/ab.sh's pe_base_s43, the same recipe; de_base_s43 is new here).
# Arms as docs/results/bf_offset_memo_s29/arm.sh (one task, 1,500 steps, seed 0, latent evaluation) plus the given
# form (arm.sh's given()). Compare with docs/results/v17_latent/given_paired.py and eta_table.py.
cd "$(dirname "$0")/../../.." && source docs/results/bf_offset_memo_s29/arm.sh
for T in pe de; do
  arm ${T}_base_s43 $T "model.probe_k0_nominal=[]" && given ${T}_base_s43 $T
  arm ${T}_form_s44 $T "model.probe_k0_nominal=[]" "model.icr_form_table=[$T]" && given ${T}_form_s44 $T
done
