# lme4 + emmeans side of benchmarks/mixed_model_fit.py.
# Usage: Rscript fit_paper_scale.R TABLE_CSV OUT_CSV
# Fits ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id) by REML with the study's
# optimizer settings (protocol §3.4) and writes system marginal means (emmeans, asymptotic).
suppressMessages({library(lme4); library(emmeans)})
invisible(Sys.setlocale("LC_COLLATE", "C"))
args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[1], stringsAsFactors = FALSE)
data$Model <- relevel(factor(data$Model), ref = "contriever")
data$query_type <- relevel(factor(data$query_type), ref = "FACTOID")
fit <- lmer(ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id), data = data,
            control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 500000)))
emm <- as.data.frame(emmeans(fit, ~ Model))
out <- rbind(
  data.frame(quantity = "emmean", name = as.character(emm$Model), value = emm$emmean),
  data.frame(quantity = "emmean_se", name = as.character(emm$Model), value = emm$SE),
  data.frame(quantity = "fixef", name = names(fixef(fit)), value = unname(fixef(fit))),
  data.frame(quantity = "loglik", name = "logLik", value = as.numeric(logLik(fit)))
)
write.csv(out, args[2], row.names = FALSE)
