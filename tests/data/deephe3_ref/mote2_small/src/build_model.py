from deephe3_1 import Net
net = Net(
    num_species=2,
    irreps_embed_node='8x0e',
    irreps_edge_init='8x0e',
    irreps_sh='1x0e+1x1o+1x2e',
    irreps_mid_node='8x0e+4x1o+2x2e',
    irreps_post_node='8x0e+4x1o+2x2e',
    irreps_out_node='1x0e',
    irreps_mid_edge='8x0e+4x1o+2x2e',
    irreps_post_edge='17x0e+20x1o+8x1e+8x2o+20x2e+8x3o+4x3e+4x4e',
    irreps_out_edge='1x0e+1x0e+1x0e+1x1o+1x1o+1x2e+1x2e+1x0e+1x0e+1x0e+1x1o+1x1o+1x2e+1x2e+1x0e+1x0e+1x0e+1x1o+1x1o+1x2e+1x2e+1x1o+1x1o+1x1o+1x0e+1x1e+1x2e+1x0e+1x1e+1x2e+1x1o+1x2o+1x3o+1x1o+1x2o+1x3o+1x1o+1x1o+1x1o+1x0e+1x1e+1x2e+1x0e+1x1e+1x2e+1x1o+1x2o+1x3o+1x1o+1x2o+1x3o+1x2e+1x2e+1x2e+1x1o+1x2o+1x3o+1x1o+1x2o+1x3o+1x0e+1x1e+1x2e+1x3e+1x4e+1x0e+1x1e+1x2e+1x3e+1x4e+1x2e+1x2e+1x2e+1x1o+1x2o+1x3o+1x1o+1x2o+1x3o+1x0e+1x1e+1x2e+1x3e+1x4e+1x0e+1x1e+1x2e+1x3e+1x4e',
    num_block=2,
    r_max=7.2,
    use_sc=True,
    no_parity=False,
    use_sbf=False,
    only_ij=False,
    if_sort_irreps=False
)
