# Shared by the reference scripts in this folder: collect (case, quantity, name, value) rows and
# write them as one CSV. Each script sources it from its own folder (the --file argument of Rscript).
rows <- list()
add <- function(case, quantity, name, value) {
  rows[[length(rows) + 1]] <<- data.frame(case = case, quantity = quantity, name = name,
                                          value = as.numeric(value))
}
write_rows <- function(path) write.csv(do.call(rbind, rows), path, row.names = FALSE)
