# Reference fits with lme4 + emmeans for tests/test_mixed.py.
# Usage: Rscript reference_fits.R OUT_DIR SYNTHETIC_CSV
# Writes the lme4 example data (sleepstudy.csv, pastes.csv, penicillin.csv) and reference.csv
# (columns case, quantity, name, value) into OUT_DIR.
suppressMessages({library(lme4); library(emmeans)})
invisible(Sys.setlocale("LC_COLLATE", "C"))
emm_options(lmer.df = "asymptotic")
args <- commandArgs(trailingOnly = TRUE)
out_dir <- args[1]
write.csv(sleepstudy, file.path(out_dir, "sleepstudy.csv"), row.names = FALSE)
write.csv(Pastes, file.path(out_dir, "pastes.csv"), row.names = FALSE)
write.csv(Penicillin, file.path(out_dir, "penicillin.csv"), row.names = FALSE)

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
                 "reference_rows.R"))
add_fit <- function(case, fit) {
  add(case, "fixef", names(fixef(fit)), fixef(fit))
  add(case, "se", names(fixef(fit)), sqrt(diag(as.matrix(vcov(fit)))))
  vc <- as.data.frame(VarCorr(fit))
  vc_name <- ifelse(is.na(vc$var1), vc$grp,
                    ifelse(is.na(vc$var2), paste(vc$grp, vc$var1, sep = "|"),
                           paste(vc$grp, vc$var1, vc$var2, sep = "|")))
  add(case, "vcov", vc_name, vc$vcov)
  add(case, "loglik", "logLik", as.numeric(logLik(fit)))
}
add_emm <- function(case, tab, quantity) {
  tab <- as.data.frame(tab)
  factors <- attr(tab, "pri.vars")
  label <- do.call(paste, c(lapply(factors, function(f) as.character(tab[[f]])), sep = " "))
  add(case, paste0(quantity, "_estimate"), label, tab$emmean)
  add(case, paste0(quantity, "_se"), label, tab$SE)
  add(case, paste0(quantity, "_lower"), label, tab$asymp.LCL)
}
add_contrast <- function(case, con, quantity) {
  tab <- as.data.frame(summary(con, infer = c(TRUE, TRUE)))
  add(case, paste0(quantity, "_estimate"), as.character(tab$contrast), tab$estimate)
  add(case, paste0(quantity, "_se"), as.character(tab$contrast), tab$SE)
  add(case, paste0(quantity, "_p"), as.character(tab$contrast), tab$p.value)
  add(case, paste0(quantity, "_lower"), as.character(tab$contrast), tab$asymp.LCL)
}

add_fit("sleepstudy", lmer(Reaction ~ Days + (Days | Subject), sleepstudy))
sleep_intercepts <- lmer(Reaction ~ Days + (1 | Subject), sleepstudy)
add_fit("sleepstudy_intercept", sleep_intercepts)
jt <- as.data.frame(joint_tests(sleep_intercepts))
add("sleepstudy_intercept", "joint_F", as.character(jt[["model term"]]), jt$F.ratio)
add_fit("pastes", lmer(strength ~ 1 + (1 | batch/cask), Pastes))
add_fit("pastes_ml", lmer(strength ~ 1 + (1 | batch/cask), Pastes, REML = FALSE))
add_fit("penicillin", lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin))

study <- read.csv(args[2], stringsAsFactors = FALSE)
study$Model <- relevel(factor(study$Model), ref = "contriever")
study$query_type <- factor(study$query_type)
fit <- lmer(ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id), study)
add_fit("study", fit)
emm <- emmeans(fit, ~ Model)
add_emm("study", emm, "emm_model")
add_emm("study", emmeans(fit, ~ Model * query_type), "emm_cell")
add_contrast("study", pairs(emm, adjust = "tukey"), "pairs_tukey")
add_contrast("study", pairs(emm, adjust = "holm"), "pairs_holm")
levels_model <- levels(study$Model)
family <- ifelse(levels_model %in% c("contriever", "bm25"), -1 / 2, 1 / 2)
add_contrast("study", contrast(emm, list(llm_minus_classic = family), adjust = "none"), "custom")
jt <- as.data.frame(joint_tests(fit))
add("study", "joint_F", as.character(jt[["model term"]]), jt$F.ratio)
add("study", "joint_df1", as.character(jt[["model term"]]), jt$df1)

write_rows(file.path(out_dir, "reference.csv"))
