# %% [markdown]
# # The BatchNorm backward, on one page
#
# Inline $\hat x_i = (x_i - \mu)\,s$ and display
#
# $$\frac{\partial L}{\partial x_i} = \frac{\gamma s}{m}\Big(m\,dy_i - \sum_j dy_j - \hat x_i \sum_j dy_j \hat x_j\Big)$$

# %%
import numpy as np
print(np.ones(3))
