# Satterthwaite reference values (lme4 + lmerTest + emmeans) for tests/test_mixed_inference.py.
# Usage: Rscript satterthwaite_fits.R OUT_DIR STUDY_CSV [SUBSAMPLE_CSV]
# Writes sleepstudy.csv (lme4's data) and satterthwaite.csv (columns case, quantity, name, value)
# into OUT_DIR. Every fit converges tightly (bobyqa, rhoend 1e-12) so that the comparison
# measures the inference, not where an optimizer stopped. SUBSAMPLE_CSV, when given, is a
# study-shaped table with task_type and corpus_type columns; its three query-level models add
# their Type-III ANOVA rows.
suppressMessages({library(lmerTest); library(emmeans)})
invisible(Sys.setlocale("LC_COLLATE", "C"))
emm_options(lmer.df = "satterthwaite", lmerTest.limit = 1e6)
args <- commandArgs(trailingOnly = TRUE)
out_dir <- args[1]
write.csv(sleepstudy, file.path(out_dir, "sleepstudy.csv"), row.names = FALSE)
tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5),
                     check.conv.grad = "ignore", check.conv.singular = "ignore",
                     check.conv.hess = "ignore")

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
                 "reference_rows.R"))
add_fit <- function(case, fit) {
  add(case, "fixef", names(fixef(fit)), fixef(fit))
  add(case, "loglik", "logLik", as.numeric(logLik(fit)))
  vc <- as.data.frame(VarCorr(fit))
  vc_name <- ifelse(is.na(vc$var1), vc$grp,
                    ifelse(is.na(vc$var2), paste(vc$grp, vc$var1, sep = "|"),
                           paste(vc$grp, vc$var1, vc$var2, sep = "|")))
  add(case, "vcov", vc_name, vc$vcov)
  coefs <- coef(summary(fit))
  add(case, "coef_se", rownames(coefs), coefs[, "Std. Error"])
  add(case, "coef_df", rownames(coefs), coefs[, "df"])
  add(case, "coef_t", rownames(coefs), coefs[, "t value"])
  add(case, "coef_p", rownames(coefs), coefs[, "Pr(>|t|)"])
}
add_anova <- function(case, fit) {
  a <- anova(fit, type = 3, ddf = "Satterthwaite")
  add(case, "anova_sum_sq", rownames(a), a[["Sum Sq"]])
  add(case, "anova_mean_sq", rownames(a), a[["Mean Sq"]])
  add(case, "anova_num_df", rownames(a), a$NumDF)
  add(case, "anova_den_df", rownames(a), a$DenDF)
  add(case, "anova_F", rownames(a), a[["F value"]])
  add(case, "anova_p", rownames(a), a[["Pr(>F)"]])
}
label_of <- function(tab) {
  factors <- attr(tab, "pri.vars")
  do.call(paste, c(lapply(factors, function(f) as.character(tab[[f]])), sep = " "))
}
add_emm <- function(case, emm, quantity) {
  tab <- as.data.frame(summary(emm))
  label <- label_of(tab)
  add(case, paste0(quantity, "_estimate"), label, tab$emmean)
  add(case, paste0(quantity, "_se"), label, tab$SE)
  add(case, paste0(quantity, "_df"), label, tab$df)
  add(case, paste0(quantity, "_lower"), label, tab$lower.CL)
  add(case, paste0(quantity, "_upper"), label, tab$upper.CL)
}
add_contrast <- function(case, con, quantity) {
  tab <- as.data.frame(summary(con, infer = c(TRUE, TRUE)))
  name <- as.character(tab$contrast)
  add(case, paste0(quantity, "_estimate"), name, tab$estimate)
  add(case, paste0(quantity, "_se"), name, tab$SE)
  add(case, paste0(quantity, "_df"), name, tab$df)
  add(case, paste0(quantity, "_t"), name, tab$t.ratio)
  add(case, paste0(quantity, "_p"), name, tab$p.value)
  add(case, paste0(quantity, "_lower"), name, tab$lower.CL)
  add(case, paste0(quantity, "_upper"), name, tab$upper.CL)
}
# emmeans prints joint-test F to 3 and df2 to 2 decimals; its p-value uses the unrounded ones,
# and its est.fcns are the orthonormal rows it tested, from which F and df2 are recomputed.
add_joint <- function(case, fit) {
  jt <- joint_tests(fit)
  terms <- as.character(jt[["model term"]])
  add(case, "joint_df1", terms, jt$df1)
  add(case, "joint_p", terms, jt$p.value)
  for (term in terms) {
    basis <- attr(jt, "est.fcns")[[term]]
    z <- basis %*% fixef(fit)
    f <- drop(t(z) %*% solve(basis %*% as.matrix(vcov(fit)) %*% t(basis), z)) / nrow(basis)
    df2 <- min(apply(basis, 1, function(l) contest1D(fit, l)$df))
    add(case, "joint_F", term, f)
    add(case, "joint_df2", term, df2)
  }
}

add_fit("sleep_slopes", m <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy, control = tight))
add_anova("sleep_slopes", m)
add_fit("sleep_uncorrelated", lmer(Reaction ~ Days + (Days || Subject), sleepstudy, control = tight))
add_fit("sleep_separate",
        lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sleepstudy, control = tight))

# A subject-level factor crossed with the covariate: Type III tests the factor at Days = 0,
# emmeans at the mean of Days.
cohorts <- sleepstudy
cohorts$cohort <- c("a", "b", "c")[as.integer(cohorts$Subject) %% 3 + 1]
m <- lmer(Reaction ~ Days * cohort + (Days | Subject), cohorts, control = tight)
add_fit("sleep_cohort", m)
add_anova("sleep_cohort", m)
emm <- emmeans(m, ~ cohort)
add_emm("sleep_cohort", emm, "emm")
add_contrast("sleep_cohort", pairs(emm, adjust = "tukey"), "tukey")
add_joint("sleep_cohort", m)

study <- read.csv(args[2], stringsAsFactors = FALSE)
study$Model <- relevel(factor(study$Model), ref = "contriever")
study$query_type <- factor(study$query_type)
m <- lmer(ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id), study, control = tight)
add_fit("study", m)
add_anova("study", m)
emm <- emmeans(m, ~ Model)
add_emm("study", emm, "emm_model")
add_emm("study", emmeans(m, ~ Model * query_type), "emm_cell")
add_contrast("study", pairs(emm, adjust = "tukey"), "tukey")
add_contrast("study", pairs(emm, adjust = "holm"), "holm")
add_contrast("study", pairs(emm, adjust = "bonferroni"), "bonferroni")
levels_model <- levels(study$Model)
family <- ifelse(levels_model %in% c("contriever", "bm25"), -1 / 2, 1 / 2)
add_contrast("study", contrast(emm, list(llm_minus_classic = family), adjust = "none"), "custom")
add_joint("study", m)
m <- lmer(ndcg_10 ~ Model + (1 | dataset_name/query_id), study, control = tight)
add_fit("study_model_only", m)
add_anova("study_model_only", m)
# Equal dataset means: the dataset variance sits on its bound (a singular fit).
flat <- study
flat$ndcg_10 <- flat$ndcg_10 - ave(flat$ndcg_10, flat$dataset_name) + mean(flat$ndcg_10)
m <- lmer(ndcg_10 ~ Model + (1 | dataset_name/query_id), flat, control = tight)
add_fit("singular", m)
add("singular", "is_singular", "isSingular", isSingular(m))

if (length(args) >= 3) {
  sub <- read.csv(args[3], stringsAsFactors = FALSE)
  sub$Model <- relevel(factor(sub$Model), ref = "contriever")
  references <- list(query_type = "FACTOID", task_type = "Question Answering",
                     corpus_type = "Wikipedia")
  for (factor_name in names(references)) {
    sub[[factor_name]] <- relevel(factor(sub[[factor_name]]), ref = references[[factor_name]])
    formula <- as.formula(paste("ndcg_10 ~ Model *", factor_name, "+ (1 | dataset_name/query_id)"))
    add_anova(paste0("subsample_", factor_name), lmer(formula, sub, control = tight))
  }
}

write_rows(file.path(out_dir, "satterthwaite.csv"))
