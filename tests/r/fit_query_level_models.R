# lme4 + lmerTest + emmeans side of the query-level case of benchmarks/mixed_model_fit.py.
# Usage: Rscript fit_query_level_models.R TABLE_CSV OUT_CSV [START_CSV]
# TABLE_CSV has query_id, dataset_name, query_type, task_type, corpus_type, Model, ndcg_10.
# For X in query type, task type and corpus type: lmerTest::lmer(ndcg_10 ~ Model * X +
# (1 | dataset_name/query_id)) by REML with the study's bobyqa settings (protocol §3.4),
# anova(type = 3, ddf = "Satterthwaite") and the Model x X cell marginal means of emmeans with
# Satterthwaite df (lmerTest.limit raised so that emmeans does not fall back to asymptotic).
# START_CSV (columns case, value: theta per X in lme4's order) starts bobyqa there instead of at
# lme4's default; the benchmark passes robustir's optimum to separate where R's optimizer stops
# from how lmerTest computes the df.
suppressMessages({library(lmerTest); library(emmeans)})
invisible(Sys.setlocale("LC_COLLATE", "C"))
emm_options(lmer.df = "satterthwaite", lmerTest.limit = Inf)
args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[1], stringsAsFactors = FALSE)
data$Model <- relevel(factor(data$Model), ref = "contriever")
control <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 500000))
start <- if (length(args) >= 3) read.csv(args[3], stringsAsFactors = FALSE) else NULL
references <- list(query_type = "FACTOID", task_type = "Question Answering",
                   corpus_type = "Wikipedia")
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
                 "reference_rows.R"))
for (factor_name in names(references)) {
  data[[factor_name]] <- relevel(factor(data[[factor_name]]), ref = references[[factor_name]])
  formula <- as.formula(paste("ndcg_10 ~ Model *", factor_name, "+ (1 | dataset_name/query_id)"))
  theta <- if (is.null(start)) NULL else list(theta = start$value[start$case == factor_name])
  fit <- lmer(formula, data = data, control = control, start = theta)
  a <- anova(fit, type = 3, ddf = "Satterthwaite")
  add(factor_name, "anova_F", rownames(a), a[["F value"]])
  add(factor_name, "anova_num_df", rownames(a), a$NumDF)
  add(factor_name, "anova_den_df", rownames(a), a$DenDF)
  add(factor_name, "anova_p", rownames(a), a[["Pr(>F)"]])
  cells <- as.data.frame(emmeans(fit, as.formula(paste("~ Model *", factor_name))))
  label <- paste(cells$Model, cells[[factor_name]])
  add(factor_name, "cell_estimate", label, cells$emmean)
  add(factor_name, "cell_se", label, cells$SE)
  add(factor_name, "cell_df", label, cells$df)
  add(factor_name, "cell_lower", label, cells$lower.CL)
  add(factor_name, "cell_upper", label, cells$upper.CL)
  add(factor_name, "loglik", "logLik", as.numeric(logLik(fit)))
}
write_rows(args[2])
